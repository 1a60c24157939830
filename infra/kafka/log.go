package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/parley-chat/parley/events"
	"github.com/rcrowley/go-metrics"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	// Sarama keeps go-metrics meters and histograms per broker and topic
	// and updates them on every request and record; Parley never reads
	// them (its own metrics are in /metrics). Nil metrics turn them off
	// for every Sarama client of the process.
	metrics.UseNilMetrics = true
}

// Record headers that Parley's publisher writes besides events.MetadataName
// and the Watermill message UUID; a Watermill subscriber reads each as the
// message's metadata.
const (
	// MetadataKey holds the partition key: the conversation id.
	MetadataKey = "key"
)

// Config configures Parley's connection to the event log.
type Config struct {
	// Brokers are the Kafka bootstrap addresses.
	Brokers []string
	// ClientID names this process to the brokers.
	ClientID string
	// Topic is the conversation topic: MessageSent and group events.
	Topic string
	// UsersTopic carries events of the user service (UserLoggedOut), keyed
	// by account; UsersPartitions is its partition count.
	UsersTopic      string
	UsersPartitions int32
	// Partitions is the topic's partition count, fixed at creation: a
	// conversation's partition is a hash of its id modulo this number.
	Partitions int32
	// ReplicationFactor for topics Parley creates (1 on the embedded broker).
	ReplicationFactor int16
	// Epoch goes into the high bits of every msgid (see events.MsgID). Raise
	// it when the log moves to a new cluster whose offsets restart at zero.
	Epoch uint8
	// UsersOnly opens only the users topic, for tools that publish user
	// events and must not care how the conversation topic is partitioned.
	UsersOnly bool
	// Security is TLS and SASL to external brokers.
	Security Security
	// Embedded, if set, is the broker Brokers name, running in this
	// process (a single node): the log appends to it in process, with no
	// Kafka protocol, producer or loopback connection in between, into
	// the same records and record batches. Its other requests (offsets,
	// subscribers) still go over the protocol. Once it is closed, appends
	// fail.
	Embedded *Embedded
	// Dial, if set, opens every connection to the brokers, whatever
	// address the metadata names (tests route them through a fault
	// proxy). TLS, if enabled, runs over the connection it returns.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives a line when appends start failing and when they work
	// again. Default slog.Default().
	Logger *slog.Logger
	// Retention is how long the conversation topic keeps a record; 0
	// keeps records forever. Every read model is durable, so the log need
	// not keep what they all applied: a finite retention bounds the log's
	// size, at the price that a projector more than Retention behind, or a
	// replay, finds records gone. Parley creates the topic with it and sets
	// it on an existing topic.
	Retention time.Duration
	// AppendTimeout is how long an append may wait to be sent before it
	// fails, as when the brokers cannot be reached: a bound on what the
	// producer buffers, and on how late a record given up on by its
	// caller can still land. An append already sent waits for the
	// broker's answer instead: the idempotent producer cannot tell
	// whether it landed. Appends in process (Embedded) are sent at once
	// and fail at once when the broker is closed; Close waits for those
	// under way at most this long. Default 10s.
	AppendTimeout time.Duration
	// OwnRetention sets the retention on an existing topic even to keep
	// records forever: the embedded broker is Parley's own. On a cluster
	// of someone else's, a finite retention set outside Parley is kept
	// and warned about.
	OwnRetention bool
}

func (c *Config) setDefaults() {
	if c.ClientID == "" {
		c.ClientID = "parley"
	}
	if c.Topic == "" {
		c.Topic = events.DefaultConversationTopic
	}
	if c.Partitions == 0 {
		c.Partitions = events.DefaultPartitions
	}
	if c.UsersTopic == "" {
		c.UsersTopic = events.DefaultUsersTopic
	}
	if c.UsersPartitions == 0 {
		c.UsersPartitions = events.DefaultUsersPartitions
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = 1
	}
	if c.Epoch == 0 {
		c.Epoch = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.AppendTimeout == 0 {
		c.AppendTimeout = 10 * time.Second
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafka: at least one broker is required"))
	}
	if c.Partitions < 1 || c.Partitions > 10000 {
		errs = append(errs, fmt.Errorf("kafka: partitions %d must be within 1..10000", c.Partitions))
	}
	if c.Epoch > events.MaxEpoch {
		errs = append(errs, fmt.Errorf("kafka: epoch %d must be within 1..%d", c.Epoch, events.MaxEpoch))
	}
	if err := c.Security.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.AppendTimeout < 0 {
		errs = append(errs, fmt.Errorf("kafka: append timeout %v must be positive", c.AppendTimeout))
	}
	if c.ReplicationFactor < 1 {
		errs = append(errs, fmt.Errorf("kafka: replication factor %d must be positive", c.ReplicationFactor))
	}
	return errors.Join(errs...)
}

func (c Config) saramaConfig() (*sarama.Config, error) {
	sc := sarama.NewConfig()
	c.applyDial(sc)
	if err := c.Security.Apply(sc); err != nil {
		return nil, err
	}
	sc.ClientID = c.ClientID
	sc.Version = sarama.V2_8_0_0
	sc.Metadata.AllowAutoTopicCreation = false
	return sc, nil
}

// applyDial makes Sarama open its connections with c.Dial, if set.
func (c Config) applyDial(sc *sarama.Config) {
	if c.Dial != nil {
		sc.Net.Proxy.Enable, sc.Net.Proxy.Dialer = true, dialFunc(c.Dial)
	}
}

// dialFunc is a Config.Dial as Sarama's proxy dialer.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func (d dialFunc) Dial(network, addr string) (net.Conn, error) {
	return d(context.Background(), network, addr)
}

// producerOpts configure the franz-go client that appends: an ack means
// the record is in the log (all in-sync replicas have it), and the
// idempotent producer never writes a retried batch twice.
func (c Config) producerOpts() ([]kgo.Opt, error) {
	sec, err := c.Security.kgoOpts(c.Dial)
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(c.ClientID),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Parley places each record itself (events.PartitionFor), so a
		// reader can tell a conversation's partition without asking the
		// broker.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// Records as Sarama wrote them: uncompressed.
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		// No linger: the one produce request in flight per broker (the
		// idempotent producer allows no more) is what batches concurrent
		// appends; a linger only adds to every ack (1 ms made two
		// senders 8x slower in BenchmarkAppend, docs/benchmarks.md).
		kgo.ProducerLinger(0),
		// A retriable error (a full disk, a moved leader) fails the
		// append after ten tries 50 ms apart; brokers that cannot be
		// reached fail it after AppendTimeout (connection errors do not
		// count as tries) — unless its request is under way: then the
		// broker may have written it, and franz-go waits for the answer
		// (retrying the request, which the broker dedupes) however long
		// the broker is gone. Failing such a record would make its outcome
		// a lie: a resend under the same client message id, appended
		// after it, would make two messages when the first one lands
		// (franz-go's AllowIdempotentProduceCancellation, on here until
		// the late appends' outcomes counted, did exactly that). The
		// caller still hears unavailable at its own deadline
		// (events.LateAppend).
		kgo.RecordRetries(10),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
		kgo.RecordDeliveryTimeout(c.AppendTimeout),
		// A failed request waits for fresh metadata; franz-go's default
		// 5 s between metadata requests would hold appends that long
		// after the broker is lost, and again after it is back.
		kgo.MetadataMinAge(250 * time.Millisecond),
		// Bounded in bytes, not only in records (50,000 by default): an
		// append past the bound fails at once (kgo.ErrMaxBuffered).
		kgo.MaxBufferedBytes(maxBufferedBytes),
		// Parley's metrics are its own (/metrics); no pushes to the broker.
		kgo.DisableClientMetrics(),
	}
	return append(opts, sec...), nil
}

// Log appends events to the conversation topic and reports positions.
// It is safe for concurrent use; concurrent appends are batched together.
type Log struct {
	cfg      Config
	client   *kgo.Client // offsets, and appends unless in process
	producer producer    // appends: client, or the embedded broker in process

	endsMu sync.Mutex
	ends   map[int32]*endState

	healthMu sync.Mutex
	failing  error     // of the last append, nil once one succeeds
	failedAt time.Time // when the last append failed

	acked Advancer // hears of every acknowledged append to Topic; may be nil

	gaveUp atomic.Bool // a Settle waited AppendTimeout in vain
}

// producer appends records; *kgo.Client is one.
type producer interface {
	// TryProduce appends r and calls promise with its outcome (r with
	// its Offset set, or an error) exactly once.
	TryProduce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	// Flush waits for the appends under way, until ctx ends.
	Flush(ctx context.Context) error
	// Close makes later appends fail (and, for franz-go's client,
	// those still buffered).
	Close()
}

// Advancer hears that the record at offset of partition is acknowledged
// (a progress tracker).
type Advancer interface {
	Advance(partition int32, offset int64)
}

// TrackAppends makes a hear of every record of the conversation topic the
// log acknowledges, from the next append on. Call it before appending.
func (l *Log) TrackAppends(a Advancer) { l.acked = a }

// Open connects to the brokers, makes sure the topic exists with the
// configured partition count, and starts the producer.
func Open(cfg Config) (*Log, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ensureTopics(cfg); err != nil {
		return nil, err
	}
	opts, err := cfg.producerOpts()
	if err != nil {
		return nil, err
	}
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("cannot start the kafka producer: %w", err)
	}
	l := &Log{cfg: cfg, client: client, producer: client, ends: map[int32]*endState{}}
	if cfg.Embedded != nil {
		l.producer = newEmbeddedProducer(cfg.Embedded, cfg.AppendTimeout)
	}
	return l, nil
}

// ensureTopics creates the topics of cfg, or checks them (ensureTopic),
// with a Sarama client of its own: closed before the log runs, it leaves
// no idle connection behind (one that a broker's close would leave in
// CLOSE_WAIT).
func ensureTopics(cfg Config) error {
	sc, err := cfg.saramaConfig()
	if err != nil {
		return err
	}
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return fmt.Errorf("cannot connect to kafka %v: %w", cfg.Brokers, err)
	}
	defer client.Close()
	topics := map[string]int32{cfg.Topic: cfg.Partitions, cfg.UsersTopic: cfg.UsersPartitions}
	if cfg.UsersOnly {
		delete(topics, cfg.Topic)
	}
	for topic, parts := range topics {
		retention := time.Duration(0)
		if topic == cfg.Topic {
			retention = cfg.Retention
		}
		if err := ensureTopic(client, topic, parts, cfg.ReplicationFactor, retention, cfg.OwnRetention, cfg.Logger); err != nil {
			return err
		}
	}
	return nil
}

// EmbeddedSegmentBytes is the segment size of a topic with a finite
// retention on the embedded broker: retention frees disk a whole segment
// at a time, and the broker's default segment (100 MiB) would keep up to
// that much past the retention per partition. Topics kept forever keep
// the default: every segment is a file the broker may hold open.
const EmbeddedSegmentBytes = 16 << 20

// retentionMs is a retention as Kafka's retention.ms: -1 for forever.
func retentionMs(d time.Duration) string {
	if d <= 0 {
		return "-1"
	}
	return strconv.FormatInt(d.Milliseconds(), 10)
}

// ensureTopic creates topic with partitions and retention, or checks that
// the existing one has exactly that many partitions — a different count
// would move conversations to other partitions and break their order — and
// sets its retention: to a finite one when asked; a finite one found where
// none was asked is kept, loudly (someone chose it outside Parley).
func ensureTopic(client sarama.Client, topic string, partitions int32, rf int16, retention time.Duration, own bool, log *slog.Logger) error {
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return fmt.Errorf("cannot open kafka admin: %w", err)
	}
	// Not admin.Close: that would close the shared client.
	topics, err := admin.ListTopics()
	if err != nil {
		return fmt.Errorf("cannot list kafka topics: %w", err)
	}
	want := retentionMs(retention)
	if d, ok := topics[topic]; ok {
		if d.NumPartitions != partitions {
			return fmt.Errorf("topic %s has %d partitions, configured %d: the partition count is fixed once the topic exists", topic, d.NumPartitions, partitions)
		}
		return checkRetention(admin, topic, want, retention, own, log)
	}
	err = admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: rf,
		ConfigEntries: topicConfig(want, retention, own)}, false)
	if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		return fmt.Errorf("cannot create topic %s: %w", topic, err)
	}
	// Wait until the metadata shows the topic, so the first append does not fail.
	for i := 0; i < 100; i++ {
		if err := client.RefreshMetadata(topic); err == nil {
			if ps, err := client.Partitions(topic); err == nil && int32(len(ps)) == partitions {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("topic %s did not appear after creation", topic)
}

// topicConfig is the configuration Parley gives a topic it owns or
// creates: its retention, and on the embedded broker with a finite
// retention, EmbeddedSegmentBytes.
func topicConfig(retentionMs string, retention time.Duration, own bool) map[string]*string {
	cfg := map[string]*string{"retention.ms": &retentionMs}
	if own && retention > 0 {
		seg := strconv.Itoa(EmbeddedSegmentBytes)
		cfg["segment.bytes"] = &seg
	}
	return cfg
}

// checkRetention sets or reports an existing topic's retention.ms (and
// segment.bytes, see topicConfig).
func checkRetention(admin sarama.ClusterAdmin, topic, want string, retention time.Duration, own bool, log *slog.Logger) error {
	results, err := admin.DescribeConfigs([]*sarama.ConfigResource{{Type: sarama.TopicResource, Name: topic, ConfigNames: []string{"retention.ms", "segment.bytes"}}}, sarama.DescribeConfigsOptions{})
	if err == nil && len(results) == 1 && results[0].ErrorCode != sarama.ErrNoError {
		err = results[0].ErrorCode
	}
	if err != nil {
		return fmt.Errorf("cannot read the configuration of topic %s: %w", topic, err)
	}
	have, segment := "-1", ""
	for _, r := range results {
		for _, e := range r.Configs {
			switch e.Name {
			case "retention.ms":
				have = e.Value
			case "segment.bytes":
				segment = e.Value
			}
		}
	}
	wantSegment := topicConfig(want, retention, own)["segment.bytes"]
	switch {
	case have == want && (wantSegment == nil || *wantSegment == segment):
		return nil
	case retention > 0 || own:
		if err := admin.AlterConfig(sarama.TopicResource, topic, topicConfig(want, retention, own), false); err != nil {
			return fmt.Errorf("cannot set the retention of topic %s: %w", topic, err)
		}
		log.Info("log retention set", "topic", topic, "retention", retention)
	case have != "-1":
		ms, _ := strconv.ParseInt(have, 10, 64)
		log.Warn("the log keeps records for a limited time, set outside Parley: a projector further behind than that, or a replay, finds records gone",
			"topic", topic, "retention", time.Duration(ms)*time.Millisecond)
	}
	return nil
}

// Topic is the conversation topic's name.
func (l *Log) Topic() string { return l.cfg.Topic }

// Partitions is the conversation topic's partition count.
func (l *Log) Partitions() int32 { return l.cfg.Partitions }

// Epoch is the log epoch of msgids.
func (l *Log) Epoch() uint8 { return l.cfg.Epoch }

// Brokers are the bootstrap addresses.
func (l *Log) Brokers() []string { return l.cfg.Brokers }

// UsersTopic is the user service's topic.
func (l *Log) UsersTopic() string { return l.cfg.UsersTopic }

// AppendUser writes a user-service event to the users topic.
func (l *Log) AppendUser(ctx context.Context, id string, e events.Event) (events.Position, error) {
	return l.appendTo(ctx, l.cfg.UsersTopic, l.cfg.UsersPartitions, id, e)
}

// Append writes e under id (the Watermill message UUID) and returns where it
// landed. When it returns nil the record is in the log. When ctx ends
// first the error is an *events.LateAppend: the record may still land,
// and its Outcome says whether it did. Any other error ends the append.
func (l *Log) Append(ctx context.Context, id string, e events.Event) (events.Position, error) {
	return l.appendTo(ctx, l.cfg.Topic, l.cfg.Partitions, id, e)
}

// AppendEvery writes e once to every partition of the conversation topic
// (an event that concerns every conversation, AccountErased), each record
// under id and the partition's number, and returns where each landed, by
// partition. When it returns nil every record is in the log; on an error
// some may be, and the caller appends them all again (they are alike and
// applying one twice changes nothing).
func (l *Log) AppendEvery(ctx context.Context, id string, e events.Event) ([]events.Position, error) {
	out := make([]events.Position, 0, l.cfg.Partitions)
	for p := range l.cfg.Partitions {
		rec, err := newRecord(l.cfg.Topic, p, fmt.Sprintf("%s-%d", id, p), e)
		if err != nil {
			return nil, err
		}
		pos, err := l.publish(ctx, rec)
		if err != nil {
			return nil, err
		}
		out = append(out, pos)
	}
	return out, nil
}

func (l *Log) appendTo(ctx context.Context, topic string, partitions int32, id string, e events.Event) (events.Position, error) {
	rec, err := newRecord(topic, events.PartitionFor(e.Key(), partitions), id, e)
	if err != nil {
		return events.Position{}, err
	}
	return l.publish(ctx, rec)
}

// newRecord is e as a record of topic's partition, with the headers a
// Watermill subscriber reads: the message UUID (id), the event name and
// the partition key (the conversation id).
func newRecord(topic string, partition int32, id string, e events.Event) (*kgo.Record, error) {
	payload, err := events.Encode(e)
	if err != nil {
		return nil, err
	}
	key := e.Key()
	if key == "" {
		return nil, errors.New("cannot publish a message without a partition key")
	}
	return &kgo.Record{
		Topic:     topic,
		Partition: partition,
		Key:       []byte(key),
		Value:     payload,
		Headers: []kgo.RecordHeader{
			{Key: uuidHeader, Value: []byte(id)},
			{Key: events.MetadataName, Value: []byte(e.EventName())},
			{Key: MetadataKey, Value: []byte(key)},
		},
	}, nil
}

func (l *Log) publish(ctx context.Context, rec *kgo.Record) (events.Position, error) {
	if err := ctx.Err(); err != nil {
		return events.Position{}, err
	}
	pending := events.NewPendingAppend()
	// Not the caller's context: franz-go fails every buffered record of
	// the partition when the first one's context ends, which would fail
	// other callers' appends with this one's. The caller waits under
	// its context below instead; an append given up on there may still
	// land, and the caller hears of it later (events.LateAppend).
	l.producer.TryProduce(context.Background(), rec, func(r *kgo.Record, err error) {
		l.noteAppend(err)
		pos := events.Position{Partition: r.Partition, Offset: r.Offset}
		if err != nil {
			err = fmt.Errorf("cannot append to %s: %w", rec.Topic, err)
		} else if l.acked != nil && r.Topic == l.cfg.Topic {
			l.acked.Advance(pos.Partition, pos.Offset)
		}
		pending.Settle(events.AppendOutcome{Pos: pos, Err: err})
	})
	select {
	case <-pending.Done():
		o := pending.Outcome()
		return o.Pos, o.Err
	case <-ctx.Done():
		err := ctx.Err()
		if errors.Is(err, context.DeadlineExceeded) {
			l.noteAppend(fmt.Errorf("an append took longer than its deadline: %w", err))
		}
		return events.Position{}, &events.LateAppend{Cause: fmt.Errorf("cannot append to %s in time: %w", rec.Topic, err), Pending: pending}
	}
}

// noteAppend records the outcome of an append, logging the moments appends
// start failing and work again (not every failure: a full disk fails
// every send).
func (l *Log) noteAppend(err error) {
	l.healthMu.Lock()
	defer l.healthMu.Unlock()
	switch {
	case err != nil && l.failing == nil:
		l.cfg.Logger.Error("cannot append to the event log; sends fail until it can", "err", err)
	case err == nil && l.failing != nil:
		l.cfg.Logger.Info("the event log takes appends again")
	}
	l.failing = err
	if err != nil {
		l.failedAt = time.Now()
	}
}

// WritableHold is how long after an append failed Writable reports it when
// no append came since: then it reports the log writable again, so that a
// process a load balancer took out of rotation for it (readiness) gets
// traffic — and so appends that tell — once more. An append that fails
// again reports it again.
const WritableHold = 30 * time.Second

// Writable is nil unless the last append failed, within WritableHold:
// then it is that error. Readiness reports it, so a log that cannot be
// written (a full disk, a lost broker) takes the process out of rotation.
func (l *Log) Writable() error {
	l.healthMu.Lock()
	defer l.healthMu.Unlock()
	if l.failing != nil && time.Since(l.failedAt) >= WritableHold {
		return nil
	}
	return l.failing
}

// EndOffset is the offset the next record of partition will get: every
// record acknowledged before the call is below it. Concurrent callers
// share requests to the broker: a caller joins the next request sent after
// it arrived (never one already under way, which could miss a record
// acknowledged just before the call), so every sync needs no round trip of
// its own. It gives up when ctx ends: the broker's answer (Sarama's
// lookup takes no context) then goes to the other waiters only.
func (l *Log) EndOffset(ctx context.Context, partition int32) (int64, error) {
	ch := make(chan endResult, 1)
	l.endsMu.Lock()
	st := l.ends[partition]
	if st == nil {
		st = &endState{}
		l.ends[partition] = st
	}
	st.waiters = append(st.waiters, ch)
	if !st.running {
		st.running = true
		go l.readEnds(partition, st)
	}
	l.endsMu.Unlock()
	select {
	case r := <-ch:
		return r.off, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("cannot read the end of partition %d in time: %w", partition, ctx.Err())
	}
}

type endState struct {
	running bool
	waiters []chan endResult
}

type endResult struct {
	off int64
	err error
}

// readEnds answers the waiters of partition batch by batch: each batch is
// taken before its request is sent.
func (l *Log) readEnds(partition int32, st *endState) {
	for {
		l.endsMu.Lock()
		batch := st.waiters
		st.waiters = nil
		if len(batch) == 0 {
			st.running = false
			l.endsMu.Unlock()
			return
		}
		l.endsMu.Unlock()
		off, err := l.listOffset(partition, offsetEnd)
		if err != nil {
			err = fmt.Errorf("cannot read the end of partition %d: %w", partition, err)
		}
		for _, ch := range batch {
			ch <- endResult{off, err}
		}
	}
}

// EndOffsets is EndOffset for every partition, asked in parallel; it
// gives up when ctx ends.
func (l *Log) EndOffsets(ctx context.Context) (map[int32]int64, error) {
	res := make([]endResult, l.cfg.Partitions)
	var wg sync.WaitGroup
	for p := int32(0); p < l.cfg.Partitions; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[p].off, res[p].err = l.EndOffset(ctx, p)
		}()
	}
	wg.Wait()
	out := make(map[int32]int64, l.cfg.Partitions)
	for p, r := range res {
		if r.err != nil {
			return nil, r.err
		}
		out[int32(p)] = r.off
	}
	return out, nil
}

// Settle waits, at most AppendTimeout, for the appends under way to
// settle: landed, or refused by the broker. A node calls it before its
// service stops, so that the sends its callers gave up on
// (events.LateAppend) still complete or abandon their reservations.
func (l *Log) Settle() {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.AppendTimeout)
	defer cancel()
	if l.producer.Flush(ctx) != nil {
		l.gaveUp.Store(true)
	}
}

// Close waits for the appends under way (at most AppendTimeout, and not
// again after a Settle that waited that long in vain), then stops the
// client.
func (l *Log) Close() error {
	if !l.gaveUp.Load() {
		l.Settle() // what is left fails (kgo.ErrClientClosed)
	}
	l.producer.Close()
	l.client.Close()
	return nil
}

// Timestamps of a ListOffsets request that ask for the end of a
// partition and for its first offset still in the log.
const (
	offsetEnd   = -1
	offsetStart = -2
)

// listOffset asks the leader of partition of the conversation topic for
// the offset at timestamp (ms): the first record at or after it, -1 if
// there is none, or offsetEnd or offsetStart.
func (l *Log) listOffset(partition int32, timestamp int64) (int64, error) {
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp = partition, timestamp
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic, rt.Partitions = l.cfg.Topic, []kmsg.ListOffsetsRequestTopicPartition{rp}
	req := kmsg.NewPtrListOffsetsRequest()
	req.Topics = []kmsg.ListOffsetsRequestTopic{rt}
	resp, err := req.RequestWith(context.Background(), l.client)
	if err != nil {
		return 0, err
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.Partition == partition {
				return p.Offset, kerr.ErrorForCode(p.ErrorCode)
			}
		}
	}
	return 0, fmt.Errorf("no offset of partition %d in the broker's answer", partition)
}

// StartOffsets are the first offsets still in the log, per partition.
func (l *Log) StartOffsets() (map[int32]int64, error) {
	out := make(map[int32]int64, l.cfg.Partitions)
	for p := int32(0); p < l.cfg.Partitions; p++ {
		off, err := l.listOffset(p, offsetStart)
		if err != nil {
			return nil, fmt.Errorf("cannot read the start of partition %d: %w", p, err)
		}
		out[p] = off
	}
	return out, nil
}

// OffsetsAt are, per partition, the first offsets of records at or after t
// (the end offset where there are none).
func (l *Log) OffsetsAt(t time.Time) (map[int32]int64, error) {
	out := make(map[int32]int64, l.cfg.Partitions)
	for p := int32(0); p < l.cfg.Partitions; p++ {
		off, err := l.listOffset(p, t.UnixMilli())
		if err != nil {
			return nil, fmt.Errorf("cannot find time %v in partition %d: %w", t, p, err)
		}
		if off < 0 { // no record at or after t
			if off, err = l.EndOffset(context.Background(), p); err != nil {
				return nil, err
			}
		}
		out[p] = off
	}
	return out, nil
}

// ConsumePartitions reads each partition p of from, starting at from[p],
// without a consumer group: up to (not including) to[p], or, with a nil
// to, until ctx ends. One goroutine per partition calls fn in log order
// within it; the first error of fn stops every partition and is returned.
// No goroutine calls fn after it returns.
func ConsumePartitions(ctx context.Context, consumer sarama.Consumer, topic string, from, to map[int32]int64, fn func(*sarama.ConsumerMessage) error) error {
	return eachPartition(ctx, consumer, topic, from, to, func(ctx context.Context, pc sarama.PartitionConsumer, _ int32, end int64, bounded bool) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case m, ok := <-pc.Messages():
				if !ok {
					return nil
				}
				if err := fn(m); err != nil {
					return err
				}
				if bounded && m.Offset+1 >= end {
					return nil
				}
			}
		}
	})
}

// eachPartition runs read on a goroutine for each partition of from that
// has records in range (see forPartitions), with a consumer of it from
// from[p].
func eachPartition(ctx context.Context, consumer sarama.Consumer, topic string, from, to map[int32]int64,
	read func(ctx context.Context, pc sarama.PartitionConsumer, p int32, end int64, bounded bool) error) error {
	return forPartitions(ctx, from, to, func(ctx context.Context, p int32, start, end int64) error {
		pc, err := consumePartition(ctx, consumer, topic, p, start)
		if err != nil {
			if ctx.Err() != nil {
				return nil // ended before the partition opened, as a read that ends
			}
			return fmt.Errorf("cannot read partition %d of %s from %d: %w", p, topic, start, err)
		}
		defer pc.Close()
		return read(ctx, pc, p, end, to != nil)
	})
}

// consumePartition is consumer.ConsumePartition, tried again while the
// broker connection is what failed. Sarama shares one connection per
// broker among a client's users and closes it on any failed request, so
// a partition opened while another fails its request finds it closed
// (ErrNotConnected); the next try opens it again. It returns ctx's error
// when ctx ends before a try succeeds.
func consumePartition(ctx context.Context, consumer sarama.Consumer, topic string, p int32, start int64) (sarama.PartitionConsumer, error) {
	wait := openRetryWait
	for try := 1; ; try++ {
		pc, err := consumer.ConsumePartition(topic, p, start)
		if err == nil || try == openTries || !transientOpenError(err) {
			return pc, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// openTries and openRetryWait bound consumePartition: five tries over
// about 1.5 s, time enough for the connection to open again and for
// leadership to settle.
const (
	openTries     = 5
	openRetryWait = 100 * time.Millisecond
)

// transientOpenError says whether err, from opening a partition, may
// pass by itself: the connection or the partition's leader. Sarama's
// ErrOutOfBrokers is not: it comes after Sarama's own retries.
func transientOpenError(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	for _, t := range []error{sarama.ErrNotConnected, sarama.ErrBrokerNotAvailable,
		sarama.ErrLeaderNotAvailable, sarama.ErrNotLeaderForPartition, io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(err, t) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// forPartitions runs read on a goroutine for each partition of from: from
// from[p] up to (not including) to[p], or with a nil to, on until ctx ends
// (end -1). A partition that to leaves out, or whose range is empty, is
// skipped. The first error stops the others and is returned; otherwise
// ctx's error once it ends (a bounded read cut short included), and nil
// for a bounded read that reached its end.
func forPartitions(parent context.Context, from, to map[int32]int64, read func(ctx context.Context, p int32, start, end int64) error) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	errs := make(chan error, len(from))
	var wg sync.WaitGroup
	for p, start := range from {
		end, bounded := to[p]
		if to != nil && (!bounded || start >= end) {
			continue
		}
		if !bounded {
			end = -1
		}
		wg.Go(func() {
			if err := read(ctx, p, start, end); err != nil {
				errs <- err
				cancel()
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return parent.Err()
	}
}
