package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/projections/runner"
	"github.com/twmb/franz-go/pkg/kfake"
)

// readBytes bounds one in-process read of a partition, as a fetch's
// partition limit does (Sarama's default is 1 MiB).
const readBytes = 1 << 20

// RangeSource reads topic of this broker in process, like Log.RangeSource
// reads it over the Kafka protocol: each partition of from, from from[p],
// up to (not including) to[p] — or, with a nil to, following the partition
// until the context ends. A partition at or past its end is skipped.
//
// The single node reads its own log with it: no loopback connection, no
// fetch requests to encode and decode, and a reader waiting at a
// partition's end wakes on the append itself instead of a fetch's answer.
func (e *Embedded) RangeSource(topic string, from, to map[int32]int64) runner.Source {
	return &embeddedSource{c: e.cluster, topic: topic, from: from, to: to}
}

type embeddedSource struct {
	c        *kfake.Cluster
	topic    string
	from, to map[int32]int64
}

// Consume implements runner.Source.
func (s *embeddedSource) Consume(ctx context.Context, h runner.Handler) error {
	return forPartitions(ctx, s.from, s.to, func(ctx context.Context, p int32, start, end int64) error {
		return s.partition(ctx, p, start, end, h)
	})
}

// partition reads partition p from next up to end (or on, with end -1),
// handing over at most maxBatch records at a time.
func (s *embeddedSource) partition(ctx context.Context, p int32, next, end int64, h runner.Handler) error {
	d := newBatchDecoder()
	var all []runner.RawRecord
	for end < 0 || next < end {
		// A fresh buffer per read: the records' payloads are slices of
		// it, and a handler may keep them.
		r, err := s.c.ReadPartition(s.topic, p, next, readBytes, nil)
		switch {
		case errors.Is(err, kfake.ErrClosed):
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("cannot read partition %d of %s: the embedded broker stopped", p, s.topic)
		case err != nil:
			return fmt.Errorf("cannot read partition %d of %s at %d: %w", p, s.topic, next, err)
		}
		if all, next, err = d.decode(all[:0], r.Batches, next, end); err != nil {
			return fmt.Errorf("cannot read partition %d of %s at %d: %w", p, s.topic, next, err)
		}
		for recs := all; len(recs) > 0; {
			n := min(len(recs), maxBatch)
			if err := h(ctx, runner.Batch{Partition: p, Records: recs[:n]}); err != nil {
				return err
			}
			recs = recs[n:]
		}
		if ctx.Err() != nil {
			return nil
		}
		if r.Appended != nil && (end < 0 || next < end) {
			// The read reached the partition's end: wait for the next
			// append (at once if one came while the batch was applied).
			select {
			case <-ctx.Done():
				return nil
			case <-s.c.Done():
			case <-r.Appended:
			}
		}
	}
	return nil
}
