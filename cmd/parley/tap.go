package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/kafka"
)

// tapLine is one NDJSON line of `parley tap`.
type tapLine struct {
	Event     string          `json:"event"`
	Topic     string          `json:"topic"`
	Partition int32           `json:"partition"`
	Offset    int64           `json:"offset"`
	MsgID     int64           `json:"msgId,omitempty"`
	Key       string          `json:"key"`
	Timestamp time.Time       `json:"timestamp"`
	Payload   json.RawMessage `json:"payload"`
}

// tapConfig is what `parley tap` was asked for.
type tapConfig struct {
	brokers  []string
	security kafka.Security
	topic    string
	group    string
	from     string          // earliest, latest or a time
	at       time.Time       // the time of from, zero for earliest and latest
	types    map[string]bool // nil prints every event
	epoch    uint8
	max      int
	idle     time.Duration
	duration time.Duration
}

// minIdleExit is the shortest --idle-exit: a shorter one would end a tap
// between two fetches of a busy log.
const minIdleExit = 100 * time.Millisecond

func tap(args []string, stdout, _ io.Writer) error {
	cfg, err := parseTap(args, stdout)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runTap(ctx, cfg, stdout)
}

func parseTap(args []string, stdout io.Writer) (tapConfig, error) {
	f := newFlags("tap", stdout)
	brokers := f.string("kafka-brokers", "127.0.0.1:9092", "comma-separated Kafka brokers (the embedded broker by default)")
	kafkaSec := defineKafkaSecurity(f)
	topic := f.string("topic", events.DefaultConversationTopic, "topic to read")
	group := f.string("group", "", "consumer group, to resume where the last run stopped; empty reads without one. Not parley.*: those are Parley's own")
	from := f.string("from", "latest", "where to start without committed offsets: earliest, latest, or an RFC 3339 time (without --group)")
	types := f.string("types", "", "comma-separated versioned event names to print ("+strings.Join(events.Names(), ", ")+"); empty prints all")
	epoch := f.int("log-epoch", 1, fmt.Sprintf("log epoch (1..%d), to print msgids", events.MaxEpoch))
	max := f.int("max-events", 0, "stop after this many events; 0 never")
	idle := f.duration("idle-exit", 0, "stop after this long without an event, at least "+minIdleExit.String()+"; 0 never")
	duration := f.duration("duration", 0, "stop after this long; 0 never")
	if err := f.parse(args); err != nil {
		return tapConfig{}, err
	}
	cfg := tapConfig{topic: *topic, group: *group, from: *from, epoch: uint8(*epoch), max: *max, idle: *idle, duration: *duration}
	var err error
	cfg.brokers, err = brokerList(*brokers)
	f.checkErr("kafka-brokers", err)
	kafkaSec.check(f)
	cfg.security = kafkaSec.security()
	f.check("topic", validTopic(*topic), "want 1..249 letters, digits, '.', '_' or '-'")
	f.checkErr("group", checkGroup(*group))
	cfg.at, err = startAt(*from, true)
	f.checkErr("from", err)
	if err == nil && *group != "" && !cfg.at.IsZero() {
		f.fail(fmt.Errorf("%s: a time works without %s only; a group resumes from its committed offsets", f.name("from"), f.name("group")))
	}
	cfg.types, err = eventTypes(*types)
	f.checkErr("types", err)
	f.check("log-epoch", *epoch >= 1 && *epoch <= events.MaxEpoch, "want 1..%d", events.MaxEpoch)
	f.check("max-events", *max >= 0, "want 0 (never) or more")
	f.check("idle-exit", *idle == 0 || *idle >= minIdleExit, "want 0 (never) or at least %v", minIdleExit)
	f.check("duration", *duration >= 0, "want 0 (never) or more")
	return cfg, f.err()
}

// runTap prints events until ctx ends or a stop condition of cfg is met.
func runTap(ctx context.Context, cfg tapConfig, out io.Writer) error {
	if cfg.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	sc.ClientID = "parley-tap"
	sc.Consumer.Return.Errors = true
	sc.Consumer.Offsets.Initial = sarama.OffsetNewest
	if cfg.from == "earliest" {
		sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	}
	if err := cfg.security.Apply(sc); err != nil {
		return err
	}
	client, err := sarama.NewClient(cfg.brokers, sc)
	if err != nil {
		return fmt.Errorf("cannot connect to %v: %w", cfg.brokers, err)
	}
	defer client.Close()

	p := &tapPrinter{cfg: cfg, out: out, cancel: cancel, last: time.Now()}
	if cfg.idle > 0 {
		go p.watchIdle(ctx)
	}
	if cfg.group != "" {
		g, err := sarama.NewConsumerGroupFromClient(cfg.group, client)
		if err != nil {
			return err
		}
		defer g.Close()
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{cfg.topic}, p); err != nil && ctx.Err() == nil {
				return err
			}
		}
		return p.err
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return err
	}
	defer consumer.Close()
	parts, err := client.Partitions(cfg.topic)
	if err != nil {
		return fmt.Errorf("cannot read partitions of %s: %w", cfg.topic, err)
	}
	from := make(map[int32]int64, len(parts))
	for _, part := range parts {
		from[part] = sc.Consumer.Offsets.Initial
		if !cfg.at.IsZero() {
			if from[part], err = client.GetOffset(cfg.topic, part, cfg.at.UnixMilli()); err != nil {
				return err
			}
		}
	}
	err = kafka.ConsumePartitions(ctx, consumer, cfg.topic, from, nil, func(m *sarama.ConsumerMessage) error {
		p.print(m)
		return nil
	})
	if err != nil && ctx.Err() == nil {
		return err
	}
	return p.err
}

// tapPrinter writes one NDJSON line per record, serialized across
// partitions, and stops the run when a limit is reached.
type tapPrinter struct {
	cfg    tapConfig
	out    io.Writer
	cancel context.CancelFunc

	mu    sync.Mutex
	n     int
	last  time.Time
	err   error
	enc   *json.Encoder
	limit bool
}

func (p *tapPrinter) print(m *sarama.ConsumerMessage) {
	var name string
	for _, h := range m.Headers {
		if string(h.Key) == events.MetadataName {
			name = string(h.Value)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = time.Now()
	if p.limit || (p.cfg.types != nil && !p.cfg.types[name]) {
		return
	}
	line := tapLine{Event: name, Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: string(m.Key), Timestamp: m.Timestamp}
	if json.Valid(m.Value) {
		line.Payload = m.Value
	} else {
		line.Payload, _ = json.Marshal(string(m.Value))
	}
	if m.Topic != events.DefaultUsersTopic { // user events have no msgid
		if id, err := events.MsgID(p.cfg.epoch, m.Offset); err == nil {
			line.MsgID = int64(id)
		}
	}
	if p.enc == nil {
		p.enc = json.NewEncoder(p.out)
	}
	if err := p.enc.Encode(line); err != nil && p.err == nil {
		p.err = err
		p.cancel()
	}
	p.n++
	if p.cfg.max > 0 && p.n >= p.cfg.max {
		p.limit = true
		p.cancel()
	}
}

func (p *tapPrinter) watchIdle(ctx context.Context) {
	t := time.NewTicker(p.cfg.idle / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.mu.Lock()
			idle := time.Since(p.last) > p.cfg.idle
			p.mu.Unlock()
			if idle {
				p.cancel()
				return
			}
		}
	}
}

// Setup, Cleanup and ConsumeClaim make tapPrinter a consumer group handler.
func (p *tapPrinter) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (p *tapPrinter) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (p *tapPrinter) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case <-sess.Context().Done():
			return nil
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			p.print(m)
			sess.MarkMessage(m, "")
		}
	}
}
