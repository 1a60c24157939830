// Package runner runs projections: it reads the log through a Source,
// decodes each record once, applies it to the projections fed by that
// read, in order, and records their progress. It is the one place with the
// rule for a record that cannot be applied (a poison record or an unknown
// event: logged, counted, skipped), for retrying a failure (the same batch
// again, progress unmoved), and for how far behind the log a projection
// is. The embedded node, the scale-out projector and `parley replay` all
// run their projections here.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
)

// RawRecord is one record as a source reads it, not yet decoded.
type RawRecord struct {
	Offset int64
	// Name is the versioned event name (the events.MetadataName header).
	Name      string
	Payload   []byte
	Timestamp time.Time
}

// Batch is records of one partition, in log order.
type Batch struct {
	Partition int32
	Records   []RawRecord
}

// Handler applies a batch. An error stops the source (see Source).
type Handler func(ctx context.Context, b Batch) error

// Source reads one topic of the log. Every implementation passes the
// contract suite in sourcetest.
type Source interface {
	// Consume hands h batches until ctx ends or, for a bounded source,
	// every record of its range is delivered. A bounded source whose ctx
	// ends first returns ctx's error, never nil. Within a partition batches
	// come in log order and never concurrently; partitions may run
	// concurrently. When h fails, Consume stops and returns that error:
	// nothing after the failed batch is delivered, and a source that
	// commits its position (a consumer group) has not committed the
	// failed batch.
	Consume(ctx context.Context, h Handler) error
}

// Spec is one projection the runner feeds.
type Spec struct {
	// Name is the projection's stable name, for logs and lag.
	Name       string
	Projection projections.Projection
	// Tracker records the projection's progress; the runner advances it
	// after applying a batch.
	Tracker projections.Tracker
	// Rebuild marks a read model held in memory and rebuilt at every
	// start: WaitRebuilt waits for it.
	Rebuild bool
}

// Reader is one read of the log feeding one or more projections: each
// record is read and decoded once and applied to every spec, in order (a
// projection that reads another's model comes after it).
type Reader struct {
	// Name is the reader's, for logs (a consumer group's name, say).
	Name string
	// Topic is the topic the source reads, for Lag.
	Topic  string
	Source Source
	Specs  []Spec
}

// Observer is told about records that are skipped.
type Observer interface {
	// Skipped: a record could not be applied to projection and was
	// skipped; reason is "unknown_event" or "poison".
	Skipped(projection, reason string)
}

type noObserver struct{}

func (noObserver) Skipped(string, string) {}

// Config tunes a Runner.
type Config struct {
	// Epoch maps offsets to msgids.
	Epoch uint8
	// Logger reports skipped records and retries. Default slog.Default().
	Logger *slog.Logger
	// Observer counts skipped records; nil counts nothing.
	Observer Observer
	// MinBackoff and MaxBackoff bound the pause before a failed batch is
	// tried again. Defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// Keys opens sealed bodies (events.Open) before any projection sees
	// them: the one place the log's bodies are decrypted. A body whose
	// key is destroyed reaches the projections erased. Nil opens nothing:
	// a sealed record is then poison.
	Keys events.Keys
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Observer == nil {
		c.Observer = noObserver{}
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Second
	}
}

// Runner runs readers.
type Runner struct {
	cfg     Config
	readers []Reader
}

// New returns a runner of readers.
func New(cfg Config, readers ...Reader) *Runner {
	cfg.setDefaults()
	return &Runner{cfg: cfg, readers: readers}
}

// Run consumes every reader until ctx ends, or until every bounded source
// is done. A source that stops with an error other than ctx's ends Run
// with it once the others stop; the runner itself never gives up on a
// failing projection: it retries the batch with backoff.
func (r *Runner) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(r.readers))
	var wg sync.WaitGroup
	for i, rd := range r.readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := rd.Source.Consume(ctx, r.handler(rd))
			if err != nil && !errors.Is(err, context.Canceled) {
				errs[i] = fmt.Errorf("reader %s: %w", rd.Name, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// handler decodes a batch once and applies it to each spec of rd,
// retrying until it applies or ctx ends.
func (r *Runner) handler(rd Reader) Handler {
	return func(ctx context.Context, b Batch) error {
		if len(b.Records) == 0 {
			return nil
		}
		decoded := r.decode(rd, b)
		last := b.Records[len(b.Records)-1].Offset
		backoff := r.cfg.MinBackoff
		for {
			recs, err := r.open(ctx, rd, b.Partition, decoded)
			if err == nil {
				err = r.apply(ctx, rd, b.Partition, recs, last)
			}
			if err == nil {
				return nil
			}
			r.cfg.Logger.Warn("projection failed; will retry the batch", "reader", rd.Name, "partition", b.Partition,
				"from", b.Records[0].Offset, "to", last, "in", backoff, "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, r.cfg.MaxBackoff)
		}
	}
}

// decode makes records of a batch, skipping — with a log line and a count
// for each projection — those that cannot be decoded: an event this
// version does not know (a newer producer must not stop an older
// projector) and a record that is not valid.
func (r *Runner) decode(rd Reader, b Batch) []projections.Record {
	recs := make([]projections.Record, 0, len(b.Records))
	for _, raw := range b.Records {
		rec, err := projections.Decode(raw.Name, raw.Payload, events.Position{Partition: b.Partition, Offset: raw.Offset}, r.cfg.Epoch, raw.Timestamp)
		if err != nil {
			for _, s := range rd.Specs {
				r.skip(s.Name, b.Partition, raw.Offset, err)
			}
			continue
		}
		recs = append(recs, rec)
	}
	return recs
}

// forgetter is a key cache that drops an erased account's keys.
type forgetter interface{ Forget(account string) }

// open opens the sealed bodies of recs, in log order. A record that does
// not open under its key is poison and skipped; a key store that cannot
// answer fails the batch, which is tried again. An AccountErased record
// drops the account's keys from the cache before the records after it
// are opened, so that nothing after an erasure opens with a key this
// process still held.
func (r *Runner) open(ctx context.Context, rd Reader, partition int32, recs []projections.Record) ([]projections.Record, error) {
	out := make([]projections.Record, 0, len(recs))
	for _, rec := range recs {
		switch e := rec.Event.(type) {
		case events.AccountErased:
			if f, ok := r.cfg.Keys.(forgetter); ok {
				f.Forget(e.Account)
			}
		case events.MessageSent, events.MessageEdited:
			opened, err := events.Open(ctx, r.cfg.Keys, rec.Event)
			if errors.Is(err, events.ErrTampered) || (err != nil && r.cfg.Keys == nil) {
				for _, s := range rd.Specs {
					r.skip(s.Name, partition, rec.Position.Offset, &projections.PoisonError{Err: err})
				}
				continue
			}
			if err != nil {
				return nil, err
			}
			rec.Event = opened
		}
		out = append(out, rec)
	}
	return out, nil
}

func (r *Runner) skip(projection string, partition int32, offset int64, err error) {
	reason := "poison"
	if errors.Is(err, events.ErrUnknownEvent) {
		reason = "unknown_event"
		r.cfg.Logger.Warn("skipping an unknown event", "projection", projection, "partition", partition, "offset", offset, "err", err)
	} else {
		r.cfg.Logger.Error("skipping a poison record", "projection", projection, "partition", partition, "offset", offset, "err", err)
	}
	r.cfg.Observer.Skipped(projection, reason)
}

// apply applies recs to every spec that has not applied them yet — after
// a retry the specs that succeeded the first time skip them — and
// advances each one's progress past last.
func (r *Runner) apply(ctx context.Context, rd Reader, partition int32, recs []projections.Record, last int64) error {
	for _, s := range rd.Specs {
		next := s.Tracker.Next(partition)
		if next > last {
			continue
		}
		todo := recs
		for len(todo) > 0 && todo[0].Position.Offset < next {
			todo = todo[1:]
		}
		if err := r.applySpec(ctx, s, todo); err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		s.Tracker.Advance(partition, last)
	}
	return nil
}

// applySpec applies recs to one projection: in one call when it is a
// Batcher, else one by one. A poison record is skipped and counted; any
// other error leaves the rest for the retry.
func (r *Runner) applySpec(ctx context.Context, s Spec, recs []projections.Record) error {
	if len(recs) == 0 {
		return nil
	}
	if b, ok := s.Projection.(projections.Batcher); ok {
		return b.ApplyBatch(ctx, recs)
	}
	if p, ok := s.Projection.(projections.Preparer); ok && len(recs) > 1 {
		ctx = p.Prepare(ctx, recs)
	}
	for _, rec := range recs {
		err := s.Projection.Apply(ctx, rec)
		var poison *projections.PoisonError
		switch {
		case err == nil:
		case errors.As(err, &poison):
			r.skip(s.Name, rec.Position.Partition, rec.Position.Offset, err)
		default:
			return err
		}
	}
	return nil
}

// WaitRebuilt returns once every Rebuild projection has applied the log up
// to ends (its end offsets when the process started).
func (r *Runner) WaitRebuilt(ctx context.Context, ends map[int32]int64) error {
	for _, rd := range r.readers {
		for _, s := range rd.Specs {
			if !s.Rebuild {
				continue
			}
			if err := s.Tracker.WaitForAll(ctx, ends); err != nil {
				return fmt.Errorf("cannot rebuild %s: %w", s.Name, err)
			}
		}
	}
	return nil
}

// Lag is how many records one projection has not applied in one partition.
type Lag struct {
	Projection string
	Partition  int32
	Records    int64
	// Rebuild is the projection's Spec.Rebuild.
	Rebuild bool
}

// Lag reports, for every projection fed from topic, how far it is behind
// ends (the topic's end offsets), per partition.
func (r *Runner) Lag(topic string, ends map[int32]int64) []Lag {
	var out []Lag
	for _, rd := range r.readers {
		if rd.Topic != topic {
			continue
		}
		for _, s := range rd.Specs {
			for p, end := range ends {
				out = append(out, Lag{Projection: s.Name, Partition: p, Records: max(0, end-s.Tracker.Next(p)), Rebuild: s.Rebuild})
			}
		}
	}
	return out
}
