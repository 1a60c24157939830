package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	"github.com/parley-chat/parley/events"
)

// BatchConsumerConfig configures a consumer group that hands a partition's
// records to its handler in batches.
type BatchConsumerConfig struct {
	// Group is the consumer group: the projection's stable name.
	Group string
	// MaxBatch bounds the records of one batch. Default 500.
	MaxBatch int
	// Logger reports retries. Default slog.Default().
	Logger *slog.Logger
}

// BatchHandler applies records of one partition, in log order. It must be
// idempotent: after a crash, the records since the last committed batch
// come again. An error retries the same batch (after a pause) until it
// succeeds or the consumer stops; nothing is skipped.
type BatchHandler func(ctx context.Context, batch []RawRecord) error

// RunBatchConsumer consumes the conversation topic as cfg.Group until ctx
// ends. Watermill's subscriber hands out one record per partition and
// waits for its ack before the next, which caps a durable projection at
// one write per record; here a partition's waiting records go to the
// handler together and the group commits the last one's offset after the
// handler succeeded.
func (l *Log) RunBatchConsumer(ctx context.Context, cfg BatchConsumerConfig, h BatchHandler) error {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 500
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	sc, err := l.cfg.saramaConfig()
	if err != nil {
		return err
	}
	sc.Consumer.Return.Errors = true
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Interval = 200 * time.Millisecond
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	group, err := sarama.NewConsumerGroup(l.cfg.Brokers, cfg.Group, sc)
	if err != nil {
		return fmt.Errorf("cannot join consumer group %s: %w", cfg.Group, err)
	}
	defer group.Close()
	go func() {
		for err := range group.Errors() {
			cfg.Logger.Warn("consumer group error", "group", cfg.Group, "err", err)
		}
	}()
	gh := &batchGroup{cfg: cfg, h: h}
	for ctx.Err() == nil {
		if err := group.Consume(ctx, []string{l.cfg.Topic}, gh); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
			cfg.Logger.Warn("consumer group stopped; rejoining", "group", cfg.Group, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

type batchGroup struct {
	cfg BatchConsumerConfig
	h   BatchHandler
}

func (*batchGroup) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (*batchGroup) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (g *batchGroup) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	batch := make([]RawRecord, 0, g.cfg.MaxBatch)
	for {
		var last *sarama.ConsumerMessage
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			batch = append(batch[:0], raw(m))
			last = m
		}
	drain:
		for len(batch) < g.cfg.MaxBatch {
			select {
			case m, ok := <-claim.Messages():
				if !ok {
					break drain
				}
				batch = append(batch, raw(m))
				last = m
			default:
				break drain
			}
		}
		backoff := 100 * time.Millisecond
		for {
			err := g.h(ctx, batch)
			if err == nil {
				break
			}
			g.cfg.Logger.Warn("projection batch failed; will retry", "group", g.cfg.Group, "partition", last.Partition,
				"from", batch[0].Offset, "to", last.Offset, "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
		}
		sess.MarkMessage(last, "")
	}
}

func raw(m *sarama.ConsumerMessage) RawRecord {
	r := RawRecord{Partition: m.Partition, Offset: m.Offset, Payload: m.Value, Timestamp: m.Timestamp}
	for _, h := range m.Headers {
		if string(h.Key) == events.MetadataName {
			r.Name = string(h.Value)
		}
	}
	return r
}
