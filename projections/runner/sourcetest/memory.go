package sourcetest

import (
	"context"
	"sync"

	"github.com/parley-chat/parley/projections/runner"
)

// Memory is a log in memory with the sources the runner reads: for tests
// of projections and of the runner. It passes the contract like the
// Kafka sources do.
type Memory struct {
	mu      sync.Mutex
	parts   map[int32][]runner.RawRecord
	groups  map[string]map[int32]int64 // committed next offsets
	changed chan struct{}
	// MaxBatch bounds a batch. Default 3, so that tests see several.
	MaxBatch int
}

// NewMemory returns an empty log.
func NewMemory() *Memory {
	return &Memory{parts: map[int32][]runner.RawRecord{}, groups: map[string]map[int32]int64{}, changed: make(chan struct{})}
}

// Append adds records to partition, giving them the next offsets.
func (m *Memory) Append(partition int32, recs ...runner.RawRecord) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range recs {
		r.Offset = int64(len(m.parts[partition]))
		m.parts[partition] = append(m.parts[partition], r)
	}
	close(m.changed)
	m.changed = make(chan struct{})
}

// Ends are the offsets the next records of each partition will get.
func (m *Memory) Ends() map[int32]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[int32]int64{}
	for p, recs := range m.parts {
		out[p] = int64(len(recs))
	}
	return out
}

// Range reads partitions from from[p] (0 if absent) up to to[p]; with a
// nil to it follows every partition of partitions until ctx ends.
func (m *Memory) Range(partitions []int32, from, to map[int32]int64) runner.Source {
	return &memSource{m: m, partitions: partitions, from: from, to: to}
}

// Group reads every partition of partitions as consumer group name: from
// the group's committed position, committing after each batch.
func (m *Memory) Group(name string, partitions []int32) runner.Source {
	return &memSource{m: m, partitions: partitions, group: name}
}

type memSource struct {
	m          *Memory
	partitions []int32
	from, to   map[int32]int64
	group      string
}

func (s *memSource) Consume(ctx context.Context, h runner.Handler) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(s.partitions))
	for _, p := range s.partitions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.consume(ctx, p, h); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return ctx.Err()
	}
}

func (s *memSource) consume(ctx context.Context, p int32, h runner.Handler) error {
	next := s.from[p]
	if s.group != "" {
		s.m.mu.Lock()
		next = s.m.groups[s.group][p]
		s.m.mu.Unlock()
	}
	end, bounded := s.to[p]
	if s.to != nil && !bounded {
		return nil
	}
	max := s.m.MaxBatch
	if max <= 0 {
		max = 3
	}
	for {
		if bounded && next >= end {
			return nil
		}
		s.m.mu.Lock()
		recs := s.m.parts[p]
		changed := s.m.changed
		s.m.mu.Unlock()
		if next >= int64(len(recs)) {
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
				continue
			}
		}
		stop := min(int64(len(recs)), next+int64(max))
		if bounded {
			stop = min(stop, end)
		}
		batch := append([]runner.RawRecord(nil), recs[next:stop]...)
		if err := h(ctx, runner.Batch{Partition: p, Records: batch}); err != nil {
			return err
		}
		next = stop
		if s.group != "" {
			s.m.mu.Lock()
			if s.m.groups[s.group] == nil {
				s.m.groups[s.group] = map[int32]int64{}
			}
			s.m.groups[s.group][p] = next
			s.m.mu.Unlock()
		}
	}
}
