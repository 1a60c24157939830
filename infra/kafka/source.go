package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections/runner"
)

// maxBatch bounds the records of one batch a source hands over.
const maxBatch = 500

// GroupSource reads the conversation topic as consumer group group: each
// partition from the group's committed offset (the log's start for a new
// group), handing over the records waiting at once as one batch, and
// committing a batch once the handler succeeded. Watermill's subscriber
// hands out one record per partition and waits for its ack; a batch makes
// a durable projection one write per partition's backlog instead.
func (l *Log) GroupSource(group string) runner.Source {
	return &groupSource{l: l, group: group, log: l.cfg.Logger}
}

type groupSource struct {
	l     *Log
	group string
	log   *slog.Logger
}

// Consume implements runner.Source.
func (s *groupSource) Consume(ctx context.Context, h runner.Handler) error {
	sc, err := s.l.cfg.saramaConfig()
	if err != nil {
		return err
	}
	sc.Consumer.Return.Errors = true
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Interval = 200 * time.Millisecond
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	group, err := sarama.NewConsumerGroup(s.l.cfg.Brokers, s.group, sc)
	if err != nil {
		return fmt.Errorf("cannot join consumer group %s: %w", s.group, err)
	}
	defer group.Close()
	go func() {
		for err := range group.Errors() {
			s.log.Warn("consumer group error", "group", s.group, "err", err)
		}
	}()
	gh := &groupHandler{h: h, failed: make(chan error, 1)}
	for {
		err := group.Consume(ctx, []string{s.l.cfg.Topic}, gh)
		select {
		case err := <-gh.failed:
			return err
		default:
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
			s.log.Warn("consumer group stopped; rejoining", "group", s.group, "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}
}

type groupHandler struct {
	h      runner.Handler
	failed chan error
}

func (*groupHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (*groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (g *groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	batch := make([]runner.RawRecord, 0, maxBatch)
	for {
		batch = batch[:0]
		var last *sarama.ConsumerMessage
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			batch, last = append(batch, raw(m)), m
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case m, ok := <-claim.Messages():
				if !ok {
					break drain
				}
				batch, last = append(batch, raw(m)), m
			default:
				break drain
			}
		}
		if err := g.h(ctx, runner.Batch{Partition: last.Partition, Records: batch}); err != nil {
			if ctx.Err() != nil {
				return nil // a rebalance or a stop took the partition away: not a failure
			}
			select {
			case g.failed <- err:
			default:
			}
			return err
		}
		sess.MarkMessage(last, "")
	}
}

// RangeSource reads the conversation topic without a consumer group, so it
// disturbs no one: each partition of from, from from[p], up to (not
// including) to[p] — or, with a nil to, following the partition until the
// context ends. A partition at or past its end is skipped.
func (l *Log) RangeSource(from, to map[int32]int64) runner.Source {
	return &rangeSource{l: l, topic: l.cfg.Topic, from: from, to: to}
}

type rangeSource struct {
	l        *Log
	topic    string
	from, to map[int32]int64
}

// Consume implements runner.Source. It reads on a client of its own: a
// fetch waits on the broker for new records, and on the log's client it
// would hold up the producer's requests behind it.
func (s *rangeSource) Consume(ctx context.Context, h runner.Handler) error {
	sc, err := s.l.cfg.saramaConfig()
	if err != nil {
		return err
	}
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	consumer, err := sarama.NewConsumer(s.l.cfg.Brokers, sc)
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", s.topic, err)
	}
	defer consumer.Close()
	return consumeBatches(ctx, consumer, s.topic, s.from, s.to, h)
}

// consumeBatches is ConsumePartitions in batches: the records waiting in a
// partition go to h together.
func consumeBatches(ctx context.Context, consumer sarama.Consumer, topic string, from, to map[int32]int64, h runner.Handler) error {
	return eachPartition(ctx, consumer, topic, from, to, func(ctx context.Context, pc sarama.PartitionConsumer, p int32, end int64, bounded bool) error {
		return partitionBatches(ctx, pc, p, end, bounded, h)
	})
}

func partitionBatches(ctx context.Context, pc sarama.PartitionConsumer, p int32, end int64, bounded bool, h runner.Handler) error {
	batch := make([]runner.RawRecord, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-pc.Messages():
			if !ok {
				return nil
			}
			batch = append(batch, raw(m))
		}
	drain:
		for len(batch) < maxBatch && !(bounded && batch[len(batch)-1].Offset+1 >= end) {
			select {
			case m, ok := <-pc.Messages():
				if !ok {
					break drain
				}
				batch = append(batch, raw(m))
			default:
				break drain
			}
		}
		if err := h(ctx, runner.Batch{Partition: p, Records: batch}); err != nil {
			return err
		}
		if bounded && batch[len(batch)-1].Offset+1 >= end {
			return nil
		}
	}
}

// WatermillSource reads topic with a Watermill subscriber, one record at a
// time per partition, acknowledging it once the handler succeeded: the
// source for readers whose records are rare and cheap (logouts), where
// batching buys nothing. It subscribes at once, so a subscriber that
// starts from the newest records starts from those of this moment, not of
// whenever Consume runs. The subscription ends with ctx or when Consume
// returns: the source is consumed once.
func WatermillSource(ctx context.Context, sub *wkafka.Subscriber, topic string) (runner.Source, error) {
	ctx, cancel := context.WithCancel(ctx)
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cannot subscribe to %s: %w", topic, err)
	}
	return &watermillSource{msgs: msgs, topic: topic, end: cancel}, nil
}

type watermillSource struct {
	msgs  <-chan *message.Message
	topic string
	end   context.CancelFunc
}

// Consume implements runner.Source.
func (s *watermillSource) Consume(ctx context.Context, h runner.Handler) error {
	defer s.end()
	msgs := s.msgs
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok := <-msgs:
			if !ok {
				return ctx.Err()
			}
			mctx := m.Context()
			part, ok1 := wkafka.MessagePartitionFromCtx(mctx)
			off, ok2 := wkafka.MessagePartitionOffsetFromCtx(mctx)
			if !ok1 || !ok2 {
				m.Nack()
				return fmt.Errorf("message %s of %s carries no log position", m.UUID, s.topic)
			}
			ts, _ := wkafka.MessageTimestampFromCtx(mctx)
			rec := runner.RawRecord{Offset: off, Name: m.Metadata.Get(events.MetadataName), Payload: m.Payload, Timestamp: ts}
			if err := h(ctx, runner.Batch{Partition: part, Records: []runner.RawRecord{rec}}); err != nil {
				m.Nack()
				return err
			}
			m.Ack()
		}
	}
}

// NewWatermillLogger adapts slog for Watermill, its info lines as debug.
func NewWatermillLogger(log *slog.Logger) watermill.LoggerAdapter {
	return watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
}

func raw(m *sarama.ConsumerMessage) runner.RawRecord {
	r := runner.RawRecord{Offset: m.Offset, Payload: m.Value, Timestamp: m.Timestamp}
	for _, hd := range m.Headers {
		if string(hd.Key) == events.MetadataName {
			r.Name = string(hd.Value)
		}
	}
	return r
}
