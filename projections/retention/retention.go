// Package retention is the history retention job (--retention): it
// removes each conversation's messages once they are older than the
// retention, from the store and the cache, and leaves a floor per
// conversation (store.Floor) so that sync says exactly which range is
// gone and a replay of the log does not bring it back.
package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/store"
)

// Store is the part of the history the job trims (store.Store has it).
type Store interface {
	Expired(ctx context.Context, cutoff time.Time, max int) ([]store.Floor, error)
	Remove(ctx context.Context, floors ...store.Floor) (int, error)
}

// Cache is the part of the cache the job trims (cache.Cache has it).
type Cache interface {
	Forget(ctx context.Context, conv domain.ConversationID, through domain.MsgID) (int, error)
}

// Observer hears about each run. telemetry.Metrics implements it.
type Observer interface {
	// RetentionRun reports a run that ended at end, with the messages it
	// removed from the store and the cache, and its error if it failed
	// part way (what it removed before stays removed).
	RetentionRun(end time.Time, fromStore, fromCache int, err error)
}

type noObserver struct{}

func (noObserver) RetentionRun(time.Time, int, int, error) {}

// Defaults.
const (
	DefaultInterval = time.Minute
	DefaultBatch    = 1000
	// MaxBatch bounds Batch: one step's write must stay short.
	MaxBatch = 100_000
)

// Config configures the job.
type Config struct {
	// Keep is how long a message is kept: one sent more than Keep ago is
	// removed by the next run. 0 keeps history forever (the job does
	// nothing).
	Keep time.Duration
	// Interval is the time between the end of a run and the start of the
	// next. Default DefaultInterval.
	Interval time.Duration
	// Batch bounds the messages one step reads and removes, in one short
	// write; a run takes as many steps as it needs. Default DefaultBatch.
	Batch int
	// Now is the clock. Default time.Now; tests set their own.
	Now func() time.Time
	// Observer hears about each run. Default: nobody.
	Observer Observer
	// Logger logs failed runs. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Observer == nil {
		c.Observer = noObserver{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Keep < 0 {
		errs = append(errs, fmt.Errorf("retention: keep %v is negative", c.Keep))
	}
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("retention: interval %v must be positive", c.Interval))
	}
	if c.Batch < 1 || c.Batch > MaxBatch {
		errs = append(errs, fmt.Errorf("retention: batch %d must be 1..%d", c.Batch, MaxBatch))
	}
	return errors.Join(errs...)
}

// Job removes old history. Every projector of a cluster may run one: a
// step is idempotent (a floor only rises, removing twice removes nothing
// more), so two jobs at once only repeat work.
type Job struct {
	cfg   Config
	store Store
	cache Cache
}

// New returns the job over s and c (nil: no cache to trim).
func New(s Store, c Cache, cfg Config) (*Job, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Job{cfg: cfg, store: s, cache: c}, nil
}

// Interval is the time between runs.
func (j *Job) Interval() time.Duration { return j.cfg.Interval }

// Run runs the job at once and then Interval after each run ends, until
// ctx ends. With Keep 0 it returns at once.
func (j *Job) Run(ctx context.Context) {
	if j.cfg.Keep == 0 {
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, _, err := j.RunOnce(ctx); err != nil && ctx.Err() == nil {
			j.cfg.Logger.Error("history retention run failed; the next run goes on", "err", err)
		}
		t.Reset(j.cfg.Interval)
	}
}

// RunOnce removes every message older than Keep, step by step, and
// returns how many it removed from the store and from the cache.
func (j *Job) RunOnce(ctx context.Context) (fromStore, fromCache int, err error) {
	defer func() { j.cfg.Observer.RetentionRun(j.cfg.Now(), fromStore, fromCache, err) }()
	if j.cfg.Keep == 0 {
		return 0, 0, nil
	}
	cutoff := j.cfg.Now().Add(-j.cfg.Keep)
	for ctx.Err() == nil {
		floors, err := j.store.Expired(ctx, cutoff, j.cfg.Batch)
		if err != nil || len(floors) == 0 {
			return fromStore, fromCache, err
		}
		// The cache first: once the store has removed a message, the cache
		// must not serve it, nor answer for a cursor below the floor.
		if j.cache != nil {
			for _, f := range floors {
				n, err := j.cache.Forget(ctx, f.Conversation, f.Through)
				if err != nil {
					return fromStore, fromCache, err
				}
				fromCache += n
			}
		}
		n, err := j.store.Remove(ctx, floors...)
		fromStore += n
		if err != nil {
			return fromStore, fromCache, err
		}
		if n == 0 {
			// Another job removed them first: it goes on from here.
			return fromStore, fromCache, nil
		}
	}
	return fromStore, fromCache, ctx.Err()
}
