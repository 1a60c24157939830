package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/projections"
)

var _ projections.Tracker = (*PostgresProgress)(nil)

// PostgresProgressConfig configures a PostgresProgress.
type PostgresProgressConfig struct {
	// Projection names the read model, the key of its rows in
	// projection_progress. Required. Offsets belong to one log: when the
	// log moves to a new cluster (a new epoch, offsets from zero), use a new
	// name, e.g. store.Name + "@2", or the old offsets would claim records
	// the store has not seen.
	Projection string
	// FlushInterval is the shortest time between two writes of progress:
	// advances within it are written together. Default 5ms.
	FlushInterval time.Duration
	// PollInterval is how often waiters read the table, at most once per
	// interval however many are waiting. Default 5ms.
	PollInterval time.Duration
	// RefreshInterval is how often Next's view of progress made by other
	// processes is refreshed in the background. Default 1s.
	RefreshInterval time.Duration
	// WriteTimeout bounds one write of progress, the last one at Close
	// included. Default 5s.
	WriteTimeout time.Duration
	// Logger reports failed writes. Default slog.Default().
	Logger *slog.Logger
}

func (c *PostgresProgressConfig) setDefaults() {
	if c.FlushInterval == 0 {
		c.FlushInterval = 5 * time.Millisecond
	}
	if c.PollInterval == 0 {
		c.PollInterval = 5 * time.Millisecond
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every invalid field at once.
func (c PostgresProgressConfig) Validate() error {
	var errs []error
	if c.Projection == "" {
		errs = append(errs, errors.New("progress: Projection is required"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"FlushInterval", c.FlushInterval}, {"PollInterval", c.PollInterval}, {"RefreshInterval", c.RefreshInterval}, {"WriteTimeout", c.WriteTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("progress: %s is negative (%s)", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}

// PostgresProgress is the Tracker of a read model kept in PostgreSQL. It
// stores progress in projection_progress beside the data, so that a
// process that does not run the projection (a gateway) can wait until the
// tables hold everything acknowledged before a read (I3).
//
// In the projecting process Advance only updates memory; a background
// writer flushes it every FlushInterval. The table therefore lags the data
// by a few milliseconds and never leads it, and it never moves backwards,
// even with two projectors of the same read model during a rebalance.
type PostgresProgress struct {
	pool *pgxpool.Pool
	cfg  PostgresProgressConfig

	mu       sync.Mutex
	local    map[int32]int64 // next offset applied by this process
	read     map[int32]int64 // next offset last read from the table
	dirty    map[int32]struct{}
	changed  chan struct{} // closed when local or read moves, for waiters; nil when nobody waits
	polling  bool          // a waiter is reading the table
	polledAt time.Time

	kick     chan struct{} // something is dirty
	stop     chan struct{}
	done     chan struct{}
	cancel   context.CancelFunc
	closing  sync.Once
	closeErr error
}

// NewPostgresProgress reads the projection's progress and starts the
// background writer; Close stops it. pool must come from postgres.Open.
func NewPostgresProgress(ctx context.Context, pool *pgxpool.Pool, cfg PostgresProgressConfig) (*PostgresProgress, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &PostgresProgress{
		pool: pool, cfg: cfg,
		local: map[int32]int64{}, read: map[int32]int64{}, dirty: map[int32]struct{}{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	if err := p.refresh(ctx); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	go p.run(runCtx)
	return p, nil
}

// Advance records that the record at offset of partition is applied. The
// table learns it within FlushInterval.
func (p *PostgresProgress) Advance(partition int32, offset int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if offset+1 <= p.local[partition] {
		return
	}
	p.local[partition] = offset + 1
	p.dirty[partition] = struct{}{}
	p.broadcastLocked()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Next is the offset after the last applied one of partition, as far as
// this process knows: its own advances, or the table as last read.
func (p *PostgresProgress) Next(partition int32) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.local[partition], p.read[partition])
}

// WaitFor returns once every record of partition below end is applied, or
// with the context's error.
func (p *PostgresProgress) WaitFor(ctx context.Context, partition int32, end int64) error {
	return p.WaitForAll(ctx, map[int32]int64{partition: end})
}

// WaitForAll is WaitFor for every partition in ends. It returns at once
// when this process's view already covers ends, and otherwise reads the
// table every PollInterval.
func (p *PostgresProgress) WaitForAll(ctx context.Context, ends map[int32]int64) error {
	var (
		ticker  *time.Ticker
		lastErr error
	)
	for {
		p.mu.Lock()
		part, end, ok := p.reachedLocked(ends)
		if ok {
			p.mu.Unlock()
			return nil
		}
		// Slack, so that a waiter whose ticker runs a little ahead of the
		// last poll does not skip a whole interval.
		poll := !p.polling && time.Since(p.polledAt) >= p.cfg.PollInterval*9/10
		if poll {
			p.polling = true
		}
		if p.changed == nil {
			p.changed = make(chan struct{})
		}
		changed := p.changed
		p.mu.Unlock()

		if poll {
			err := p.refresh(ctx)
			p.mu.Lock()
			p.polling, p.polledAt = false, time.Now()
			p.mu.Unlock()
			if err != nil {
				lastErr = err
			}
			continue // refresh closed changed if it learnt anything
		}
		if ticker == nil {
			ticker = time.NewTicker(p.cfg.PollInterval)
			defer ticker.Stop()
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("cannot wait for %s to reach offset %d of partition %d (last read: %v): %w", p.cfg.Projection, end, part, lastErr, ctx.Err())
			}
			return fmt.Errorf("cannot wait for %s to reach offset %d of partition %d: %w", p.cfg.Projection, end, part, ctx.Err())
		case <-changed:
		case <-ticker.C:
		}
	}
}

// reachedLocked reports the first partition of ends not yet reached.
func (p *PostgresProgress) reachedLocked(ends map[int32]int64) (int32, int64, bool) {
	for part, end := range ends {
		if max(p.local[part], p.read[part]) < end {
			return part, end, false
		}
	}
	return 0, 0, true
}

func (p *PostgresProgress) broadcastLocked() {
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
}

const readProgressSQL = `SELECT partition, next_offset FROM projection_progress WHERE projection = $1`

// refresh reads the projection's progress from the table.
func (p *PostgresProgress) refresh(ctx context.Context) error {
	if err := p.learn(p.pool.Query(ctx, readProgressSQL, p.cfg.Projection)); err != nil {
		return fmt.Errorf("cannot read progress of %s: %w", p.cfg.Projection, err)
	}
	return nil
}

// learn takes (partition, next_offset) rows as the table's progress. The
// rows are read before taking the lock: Advance, on the projector's hot
// path, never waits for the network.
func (p *PostgresProgress) learn(rows pgx.Rows, err error) error {
	if err != nil {
		return err
	}
	type row struct {
		part int32
		next int64
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.part, &x.next)
		return x, err
	})
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	moved := false
	for _, r := range got {
		if r.next > p.read[r.part] {
			p.read[r.part], moved = r.next, true
		}
	}
	if moved {
		p.broadcastLocked()
	}
	return nil
}

// flushSQL writes progress. GREATEST keeps it from moving backwards when
// another writer of the same projection got further, and RETURNING tells
// this one how far that is.
const flushSQL = `
INSERT INTO projection_progress (projection, partition, next_offset)
SELECT $1, partition, next_offset FROM unnest($2::integer[], $3::bigint[]) AS t(partition, next_offset)
ON CONFLICT (projection, partition) DO UPDATE
SET next_offset = GREATEST(projection_progress.next_offset, EXCLUDED.next_offset), updated_at = now()
RETURNING partition, next_offset`

// flush writes the dirty partitions. On failure they stay dirty.
func (p *PostgresProgress) flush(ctx context.Context) error {
	p.mu.Lock()
	if len(p.dirty) == 0 {
		p.mu.Unlock()
		return nil
	}
	parts := make([]int32, 0, len(p.dirty))
	for part := range p.dirty {
		parts = append(parts, part)
	}
	slices.Sort(parts) // one lock order for every writer
	offsets := make([]int64, len(parts))
	for i, part := range parts {
		offsets[i] = p.local[part]
	}
	clear(p.dirty)
	p.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, p.cfg.WriteTimeout)
	defer cancel()
	err := p.learn(p.pool.Query(ctx, flushSQL, p.cfg.Projection, parts, offsets))
	if err != nil {
		p.mu.Lock()
		for _, part := range parts {
			p.dirty[part] = struct{}{}
		}
		p.mu.Unlock()
		return fmt.Errorf("cannot write progress of %s: %w", p.cfg.Projection, err)
	}
	return nil
}

// run is the background writer: it flushes when something is dirty, at
// most once per FlushInterval (backing off while writes fail), and
// refreshes the view of the table every RefreshInterval.
func (p *PostgresProgress) run(ctx context.Context) {
	defer close(p.done)
	refresh := time.NewTicker(p.cfg.RefreshInterval)
	defer refresh.Stop()
	pause := time.NewTimer(0)
	<-pause.C
	failures := 0
	for {
		select {
		case <-p.stop:
			return
		case <-refresh.C:
			rctx, cancel := context.WithTimeout(ctx, p.cfg.RefreshInterval)
			if err := p.refresh(rctx); err != nil && ctx.Err() == nil {
				p.cfg.Logger.Debug("cannot refresh progress", "projection", p.cfg.Projection, "err", err)
			}
			cancel()
			continue
		case <-p.kick:
		}
		wait := p.cfg.FlushInterval
		if err := p.flush(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			wait = min(p.cfg.FlushInterval<<min(failures, 10), time.Second)
			p.cfg.Logger.Warn("cannot write progress; will retry", "projection", p.cfg.Projection, "in", wait, "err", err)
			select {
			case p.kick <- struct{}{}:
			default:
			}
		} else if failures > 0 {
			p.cfg.Logger.Info("progress written again", "projection", p.cfg.Projection, "after_failures", failures)
			failures = 0
		}
		pause.Reset(wait)
		select {
		case <-p.stop:
			return
		case <-pause.C:
		}
	}
}

// Close stops the background writer and writes what is still unwritten.
// Advances after Close are not written. Idempotent; it returns the error
// of the last write.
func (p *PostgresProgress) Close() error {
	p.closing.Do(func() {
		close(p.stop)
		p.cancel() // abandons a write in flight; the last write repeats it
		<-p.done
		p.closeErr = p.flush(context.Background())
	})
	return p.closeErr
}
