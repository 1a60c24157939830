// Command messages-per-minute is an example analytics consumer of Parley's
// event log. It counts accepted messages per minute and per conversation kind
// (direct or group) and prints one NDJSON line per minute and kind:
//
//	{"minute":"2026-11-26T18:20:00Z","kind":"direct","messages":12}
//
// It depends only on a Kafka client (franz-go's kgo) and on the schema that
// docs/events.md documents; it does not import Parley's Go packages. See
// README.md in this directory.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ---------------------------------------------------------------------------
// The schema, as docs/events.md documents it.

// headerEvent is the record header that carries the versioned event name.
// Consumers dispatch on it, never on the payload's shape.
const headerEvent = "event"

// Event names this consumer knows. Group events are understood but not
// counted; any other name is skipped, as the schema requires.
const (
	messageSentV1         = "MessageSent.v1"
	groupCreatedV1        = "GroupCreated.v1"
	groupMembersAddedV1   = "GroupMembersAdded.v1"
	groupMembersRemovedV1 = "GroupMembersRemoved.v1"
)

// messageSent is the MessageSent.v1 payload. Only Conversation and
// ServerTime are used; the other fields are listed to show the schema.
// Unknown fields are ignored (a backward-compatible change adds fields).
type messageSent struct {
	MessageID     string `json:"messageId"`
	ClientMsgID   string `json:"clientMsgId"`
	Conversation  string `json:"conversation"` // "d:<a>:<b>" or "g:<group>"
	SenderAccount string `json:"senderAccount"`
	SenderDevice  string `json:"senderDevice"`
	Kind          string `json:"kind"`       // the application's message kind, e.g. "text"
	Body          string `json:"body"`       // only in records written before bodies were sealed
	ServerTime    int64  `json:"serverTime"` // Unix milliseconds
	// BodyKey and SealedBody hold the body since bodies are sealed under
	// the sender's data key (docs/events.md, "Sealed bodies"): a consumer
	// outside Parley cannot open them.
	BodyKey    string `json:"bodyKey"`
	SealedBody []byte `json:"sealedBody"`
}

// Conversation kinds, from the conversation id's prefix. These are what the
// output's "kind" field holds (not the payload's application "kind").
const (
	kindDirect = "direct" // "d:"
	kindGroup  = "group"  // "g:"
)

func conversationKind(conv string) (string, bool) {
	switch {
	case strings.HasPrefix(conv, "d:") && len(conv) > 2:
		return kindDirect, true
	case strings.HasPrefix(conv, "g:") && len(conv) > 2:
		return kindGroup, true
	}
	return "", false
}

func headerValue(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers { // header order is not fixed
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// ---------------------------------------------------------------------------
// Aggregation by event time.

// line is one NDJSON output line: the messages of one conversation kind
// accepted during one minute (by serverTime). Late is set when the minute
// had already been reported; add such a line to the earlier ones.
type line struct {
	Minute   string `json:"minute"`
	Kind     string `json:"kind"`
	Messages int    `json:"messages"`
	Late     bool   `json:"late,omitempty"`
}

// stats counts what the consumer did with the records it read.
type stats struct {
	Records  int // every record read
	Messages int // MessageSent.v1 records counted
	Other    int // known events that are not counted (group events)
	Skipped  int // unknown or missing event names
	Errors   int // MessageSent.v1 records that could not be decoded
	Late     int // messages for a minute that had already been reported
}

type bucketKey struct {
	minute int64 // Unix milliseconds of the minute's start
	kind   string
}

type bucket struct {
	messages int
	late     bool
	// first is, per partition, the lowest offset counted in this bucket:
	// offsets from there on must not be committed before it is printed.
	first map[int32]int64
}

type partition struct {
	next     int64 // offset after the last record read
	maxTime  int64 // newest serverTime seen, Unix ms
	hasTime  bool
	caughtUp bool // next reached the high watermark of the last fetch
}

// aggregator counts messages per (minute, kind). A minute is reported once
// the event-time watermark has passed it. The watermark is the oldest
// "newest serverTime" over the partitions that are still replaying a
// backlog, or the newest serverTime overall once every partition has caught
// up. So a replay of many partitions does not report a minute while another
// partition is still behind it, and a live consumer reports a minute as soon
// as a message from a later minute arrives. Across partitions there is no
// order, so a message can still come after its minute was reported: it is
// then reported again in a line marked "late".
type aggregator struct {
	buckets  map[bucketKey]*bucket
	parts    map[int32]*partition
	reported int64 // minutes before this (Unix ms) have been reported
	stats    stats
	warn     func(format string, args ...any)
}

func newAggregator(warn func(string, ...any)) *aggregator {
	if warn == nil {
		warn = func(string, ...any) {}
	}
	return &aggregator{
		buckets:  map[bucketKey]*bucket{},
		parts:    map[int32]*partition{},
		reported: -1 << 62,
		warn:     warn,
	}
}

func (a *aggregator) part(p int32) *partition {
	ps := a.parts[p]
	if ps == nil {
		ps = &partition{}
		a.parts[p] = ps
	}
	return ps
}

// add handles one record.
func (a *aggregator) add(r *kgo.Record) {
	a.stats.Records++
	ps := a.part(r.Partition)
	ps.next = r.Offset + 1

	name, _ := headerValue(r, headerEvent)
	switch name {
	case messageSentV1:
	case groupCreatedV1, groupMembersAddedV1, groupMembersRemovedV1:
		a.stats.Other++
		return
	default:
		// Unknown or newer event (or no "event" header): skip it, never fail.
		a.stats.Skipped++
		return
	}

	var e messageSent
	if err := json.Unmarshal(r.Value, &e); err != nil {
		a.malformed(r, name, err.Error())
		return
	}
	kind, ok := conversationKind(e.Conversation)
	if !ok {
		a.malformed(r, name, fmt.Sprintf("conversation %q is neither d:… nor g:…", e.Conversation))
		return
	}
	if e.ServerTime <= 0 {
		a.malformed(r, name, fmt.Sprintf("serverTime %d is not a Unix millisecond time", e.ServerTime))
		return
	}

	a.stats.Messages++
	if !ps.hasTime || e.ServerTime > ps.maxTime {
		ps.maxTime, ps.hasTime = e.ServerTime, true
	}
	key := bucketKey{minute: e.ServerTime - e.ServerTime%60_000, kind: kind}
	b := a.buckets[key]
	if b == nil {
		b = &bucket{first: map[int32]int64{}}
		a.buckets[key] = b
	}
	if key.minute < a.reported {
		b.late = true
		a.stats.Late++
	}
	b.messages++
	if _, ok := b.first[r.Partition]; !ok {
		b.first[r.Partition] = r.Offset
	}
}

// malformed counts a MessageSent.v1 record that cannot be used. It is
// reported and passed over: one bad record must not stall its partition.
func (a *aggregator) malformed(r *kgo.Record, name, reason string) {
	a.stats.Errors++
	a.warn("partition %d offset %d: bad %s payload: %s", r.Partition, r.Offset, name, reason)
}

// fetched records the high watermark seen for a partition after its
// records were added.
func (a *aggregator) fetched(p int32, highWatermark int64) {
	ps := a.part(p)
	ps.caughtUp = ps.next >= highWatermark
}

// forget drops the state of partitions this consumer no longer owns.
// Counts already made stay; the new owner starts at the committed offset.
func (a *aggregator) forget(ps []int32) {
	for _, p := range ps {
		delete(a.parts, p)
		for _, b := range a.buckets {
			delete(b.first, p)
		}
	}
}

// watermark returns the event time up to which every partition has been
// read, and false if there is none yet.
func (a *aggregator) watermark() (int64, bool) {
	var w int64
	behind := false
	for _, ps := range a.parts {
		if ps.caughtUp {
			continue
		}
		if !ps.hasTime {
			return 0, false // still replaying, time unknown: hold everything
		}
		if !behind || ps.maxTime < w {
			w, behind = ps.maxTime, true
		}
	}
	if behind {
		return w, true
	}
	found := false
	for _, ps := range a.parts {
		if ps.hasTime && (!found || ps.maxTime > w) {
			w, found = ps.maxTime, true
		}
	}
	return w, found
}

// flush returns the lines of every minute the watermark has passed (all
// minutes if final), oldest first, and forgets them.
func (a *aggregator) flush(final bool) []line {
	if w, ok := a.watermark(); ok && w-w%60_000 > a.reported {
		a.reported = w - w%60_000
	}
	var keys []bucketKey
	for k := range a.buckets {
		if final || k.minute < a.reported {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(x, y bucketKey) int {
		if x.minute != y.minute {
			return cmp.Compare(x.minute, y.minute)
		}
		return cmp.Compare(x.kind, y.kind)
	})
	out := make([]line, 0, len(keys))
	for _, k := range keys {
		b := a.buckets[k]
		out = append(out, line{
			Minute:   time.UnixMilli(k.minute).UTC().Format(time.RFC3339),
			Kind:     k.kind,
			Messages: b.messages,
			Late:     b.late,
		})
		delete(a.buckets, k)
	}
	return out
}

// commitable returns, per partition, the offset up to which every record
// has been fully handled: counted in a printed line, skipped, or reported
// as an error. A restart resumes there, so nothing is lost; what follows it
// may be counted again (at-least-once, like any Kafka consumer).
func (a *aggregator) commitable() map[int32]int64 {
	out := make(map[int32]int64, len(a.parts))
	for p, ps := range a.parts {
		out[p] = ps.next
	}
	for _, b := range a.buckets {
		for p, off := range b.first {
			if cur, ok := out[p]; ok && off < cur {
				out[p] = off
			}
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// The consumer.

type config struct {
	brokers  []string
	topic    string
	group    string
	from     string // "earliest" or "latest"
	duration time.Duration
}

func parseFlags(args []string, errOut io.Writer) (config, error) {
	fs := flag.NewFlagSet("messages-per-minute", flag.ContinueOnError)
	fs.SetOutput(errOut)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated Kafka bootstrap brokers (Parley's embedded broker by default)")
	var cfg config
	fs.StringVar(&cfg.topic, "topic", "parley.conversations.v1", "Parley's event topic")
	fs.StringVar(&cfg.group, "group", "analytics.messages-per-minute", "this consumer's own consumer group")
	fs.StringVar(&cfg.from, "from", "earliest", "where a group without committed offsets starts: earliest or latest")
	fs.DurationVar(&cfg.duration, "duration", 0, "stop after this long (0: run until Ctrl-C)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	for _, b := range strings.Split(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			cfg.brokers = append(cfg.brokers, b)
		}
	}
	switch {
	case len(cfg.brokers) == 0:
		return config{}, errors.New("--brokers is empty")
	case cfg.topic == "":
		return config{}, errors.New("--topic is empty")
	case cfg.group == "":
		return config{}, errors.New("--group is empty")
	case strings.HasPrefix(cfg.group, "parley."):
		return config{}, fmt.Errorf("--group %q: names starting with parley. are Parley's own", cfg.group)
	case cfg.from != "earliest" && cfg.from != "latest":
		return config{}, fmt.Errorf("--from %q: want earliest or latest", cfg.from)
	case cfg.duration < 0:
		return config{}, fmt.Errorf("--duration %v is negative", cfg.duration)
	}
	return cfg, nil
}

type consumer struct {
	cfg config
	out *json.Encoder
	log *log.Logger

	mu        sync.Mutex // guards agg and committed (rebalance callbacks)
	agg       *aggregator
	committed map[int32]int64
}

func newConsumer(cfg config, out io.Writer, logger *log.Logger) *consumer {
	c := &consumer{cfg: cfg, out: json.NewEncoder(out), log: logger, committed: map[int32]int64{}}
	c.agg = newAggregator(logger.Printf)
	return c
}

// Stats returns what has been read so far. It is safe to call while run is
// running.
func (c *consumer) Stats() stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.agg.stats
}

// run consumes until ctx is done or cfg.duration has passed, then prints
// the minutes still open and commits.
func (c *consumer) run(ctx context.Context) error {
	if c.cfg.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.duration)
		defer cancel()
	}
	reset := kgo.NewOffset().AtStart()
	if c.cfg.from == "latest" {
		reset = kgo.NewOffset().AtEnd()
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.cfg.brokers...),
		kgo.ClientID("parley-messages-per-minute"),
		kgo.ConsumerGroup(c.cfg.group),
		kgo.ConsumeTopics(c.cfg.topic),
		kgo.ConsumeResetOffset(reset), // only used when the group has no offset yet
		// Commit by hand, only what has been printed (see commitable).
		kgo.DisableAutoCommit(),
		// Rebalance callbacks run between polls, not during processing.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
			_ = c.commit(ctx, cl) // logged; the next owner then re-reads a little more
			c.forget(revoked[c.cfg.topic])
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
			c.forget(lost[c.cfg.topic]) // too late to commit
		}),
	)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.CloseAllowingRebalance()
	c.log.Printf("consuming %s from %s as group %s", c.cfg.topic, strings.Join(c.cfg.brokers, ","), c.cfg.group)

	var runErr error
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			break // records of this poll are not processed nor committed
		}
		fetches.EachError(func(t string, p int32, err error) {
			c.log.Printf("fetch %s[%d]: %v", t, p, err)
		})
		c.mu.Lock()
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if p.Topic != c.cfg.topic || p.Err != nil {
				return
			}
			for _, r := range p.Records {
				c.agg.add(r)
			}
			if len(p.Records) > 0 {
				c.agg.fetched(p.Partition, p.HighWatermark)
			}
		})
		lines := c.agg.flush(false)
		c.mu.Unlock()
		if err := c.print(lines); err != nil {
			runErr = err
			break
		}
		if len(lines) > 0 {
			c.commit(ctx, cl)
		}
		cl.AllowRebalance()
	}

	// Exit: print what is still open, then commit everything read.
	c.mu.Lock()
	lines := c.agg.flush(true)
	c.mu.Unlock()
	if err := c.print(lines); err != nil {
		return errors.Join(runErr, err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.commit(cctx, cl); err != nil {
		runErr = errors.Join(runErr, err)
	}
	return runErr
}

func (c *consumer) forget(ps []int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.agg.forget(ps)
	for _, p := range ps {
		delete(c.committed, p)
	}
}

func (c *consumer) print(lines []line) error {
	for _, l := range lines {
		if err := c.out.Encode(l); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	}
	return nil
}

// commit commits the offsets that commitable allows, if they moved.
func (c *consumer) commit(ctx context.Context, cl *kgo.Client) error {
	c.mu.Lock()
	offsets := map[int32]kgo.EpochOffset{}
	for p, off := range c.agg.commitable() {
		if done, ok := c.committed[p]; !ok || off > done {
			offsets[p] = kgo.EpochOffset{Epoch: -1, Offset: off}
		}
	}
	c.mu.Unlock()
	if len(offsets) == 0 {
		return nil
	}
	var err error
	cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{c.cfg.topic: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, cerr error) {
			if cerr != nil {
				err = cerr
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
						err = errors.Join(err, fmt.Errorf("commit %s[%d]: %w", t.Topic, p.Partition, perr))
					}
				}
			}
		})
	if err != nil {
		if ctx.Err() == nil { // a canceled commit is retried at exit
			c.log.Printf("commit: %v", err)
		}
		return err
	}
	c.mu.Lock()
	for p, eo := range offsets {
		c.committed[p] = eo.Offset
	}
	c.mu.Unlock()
	return nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "messages-per-minute:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger := log.New(os.Stderr, "messages-per-minute: ", log.LstdFlags)
	c := newConsumer(cfg, os.Stdout, logger)
	err = c.run(ctx)
	s := c.Stats()
	logger.Printf("done: records=%d messages=%d other=%d skipped=%d errors=%d late=%d",
		s.Records, s.Messages, s.Other, s.Skipped, s.Errors, s.Late)
	if err != nil {
		logger.Print(err)
		os.Exit(1)
	}
}
