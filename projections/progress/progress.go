// Package progress records how far each read model has applied the log,
// per partition, and lets readers wait until it holds everything that was
// acknowledged before they asked (I3).
//
// One engine, Tracker, does the work for every read model: it keeps the
// progress made in this process in memory (Advance never waits for the
// network), writes it to a Backend beside the read model's data in the
// background, never backwards, and — for readers in other processes —
// reads the backend again while anybody waits, one read shared by every
// waiter. A Backend is a few dozen lines: memory (none), PostgreSQL,
// Redis, or the embedded store that commits progress with its data.
package progress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/parley-chat/parley/projections"
)

// Backend stores a read model's progress: for each partition, the offset
// after the last applied record.
type Backend interface {
	// Load returns the stored progress. A partition not stored is 0.
	Load(ctx context.Context) (map[int32]int64, error)
	// Save stores next for the partitions it names, never moving one
	// backwards (another process may have got further), and returns
	// what is stored for them afterwards.
	Save(ctx context.Context, next map[int32]int64) (map[int32]int64, error)
}

// Committed is backend for a read model that writes its progress in the
// same transaction as its data: it is read as usual, and Save has nothing
// left to do.
func Committed(backend Backend) Backend { return committed{backend} }

type committed struct{ Backend }

func (committed) Save(_ context.Context, next map[int32]int64) (map[int32]int64, error) {
	return next, nil
}

// ErrClosed is returned by a wait on a closed Tracker.
var ErrClosed = errors.New("progress tracker is closed")

// Config tunes a Tracker. Every field has a default.
type Config struct {
	// Name is the read model's, for errors and logs.
	Name string
	// FlushInterval is the shortest time between two writes to the
	// backend: advances within it share one write. Default 2ms.
	FlushInterval time.Duration
	// PollInterval is how often waiters that this process's own progress
	// cannot satisfy read the backend; every waiter shares one read.
	// Default 5ms.
	PollInterval time.Duration
	// RefreshInterval is how often the view of the backend is read again
	// in the background (for Next), and — with Rewrite — every partition
	// advanced here written again. Default 1s.
	RefreshInterval time.Duration
	// Rewrite writes every advanced partition at each refresh, changed or
	// not: a backend that can lose its data (Redis after a flush) gets it
	// back. A read model whose data goes with it must prove its coverage
	// another way (the cache's markers do). A partition another process
	// has taken further (a rebalance gave it away) is not rewritten until
	// this process advances it again: its old progress would speak for
	// records this process no longer applies.
	Rewrite bool
	// Timeout bounds one call to the backend. Default 5s.
	Timeout time.Duration
	// Logger reports failed writes. Default: discard.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.FlushInterval == 0 {
		c.FlushInterval = 2 * time.Millisecond
	}
	if c.PollInterval == 0 {
		c.PollInterval = 5 * time.Millisecond
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"flush interval", c.FlushInterval}, {"poll interval", c.PollInterval}, {"refresh interval", c.RefreshInterval}, {"timeout", c.Timeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("progress %s: %s %v is negative", c.Name, d.name, d.v))
		}
	}
	return errors.Join(errs...)
}

// Tracker is the projections.Tracker of one read model.
type Tracker struct {
	cfg     Config
	backend Backend // nil: memory only

	mu     sync.Mutex
	local  map[int32]int64 // progress made in this process
	stored map[int32]int64 // progress last read from the backend
	dirty  map[int32]struct{}
	// held caps the view of a partition whose progress may have lost
	// writes while the read model repairs (see Redis).
	held map[int32]int64
	// passed are the partitions advanced here that another process has
	// since taken further (see Config.Rewrite).
	passed map[int32]bool
	// changed is closed, and forgotten, when progress moves; nil while
	// nobody waits, so Advance costs no allocation then.
	changed  chan struct{}
	polling  bool
	polledAt time.Time
	closed   bool

	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

var _ projections.Tracker = (*Tracker)(nil)

// NewMemory returns a tracker kept in memory only: for read models that
// live and die with the process.
func NewMemory() *Tracker {
	t, _ := New(context.Background(), nil, Config{})
	return t
}

// New reads the stored progress and starts the background writer; Close
// stops it. With a nil backend the tracker is memory only and starts no
// goroutine.
func New(ctx context.Context, backend Backend, cfg Config) (*Tracker, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Tracker{cfg: cfg, backend: backend,
		local: map[int32]int64{}, stored: map[int32]int64{}, dirty: map[int32]struct{}{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	if backend == nil {
		close(t.done)
		return t, nil
	}
	if h, ok := backend.(interface {
		holdWith(func(int32, int64, bool))
	}); ok {
		h.holdWith(t.hold)
	}
	if err := t.load(ctx); err != nil {
		return nil, err
	}
	go t.run()
	return t, nil
}

// Advance records that the record at offset of partition is applied.
func (t *Tracker) Advance(partition int32, offset int64) {
	t.mu.Lock()
	if offset+1 <= t.local[partition] {
		t.mu.Unlock()
		return
	}
	t.local[partition] = offset + 1
	delete(t.passed, partition)
	t.broadcastLocked()
	if t.backend == nil {
		t.mu.Unlock()
		return
	}
	t.dirty[partition] = struct{}{}
	t.mu.Unlock()
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// Next is the offset after the last applied one of partition, as far as
// this process knows: its own progress, or the backend's as last read. It
// never calls the backend.
func (t *Tracker) Next(partition int32) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.viewLocked(partition)
}

// viewLocked is Next, held at a loss while it is repaired.
func (t *Tracker) viewLocked(partition int32) int64 {
	v := max(t.local[partition], t.stored[partition])
	if h, ok := t.held[partition]; ok {
		v = min(v, h)
	}
	return v
}

// hold keeps the view of partition at or below at (on), or lets it go
// (a partition not held stays as it is: the backend lets go of every
// partition it writes).
func (t *Tracker) hold(partition int32, at int64, on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !on {
		if _, held := t.held[partition]; held {
			delete(t.held, partition)
			t.broadcastLocked()
		}
		return
	}
	if t.held == nil {
		t.held = map[int32]int64{}
	}
	if old, ok := t.held[partition]; ok {
		at = min(at, old)
	}
	t.held[partition] = at
}

// WaitFor returns once every record of partition below end is applied, or
// with an error when ctx ends or the tracker closes first.
func (t *Tracker) WaitFor(ctx context.Context, partition int32, end int64) error {
	return t.WaitForAll(ctx, map[int32]int64{partition: end})
}

// WaitForAll is WaitFor for every partition in ends. It returns at once
// when this process's view covers ends; otherwise, with a backend, it reads
// the backend every PollInterval while it waits.
func (t *Tracker) WaitForAll(ctx context.Context, ends map[int32]int64) error {
	var ticker *time.Ticker
	var lastErr error
	for {
		t.mu.Lock()
		part, end, ok := t.reachedLocked(ends)
		if ok {
			t.mu.Unlock()
			return nil
		}
		if t.closed {
			t.mu.Unlock()
			return fmt.Errorf("cannot wait for %s to reach offset %d of partition %d: %w", t.cfg.Name, end, part, ErrClosed)
		}
		// A little slack, so that a waiter whose ticker runs just ahead of
		// the last poll does not skip a whole interval.
		poll := t.backend != nil && !t.polling && time.Since(t.polledAt) >= t.cfg.PollInterval*9/10
		if poll {
			t.polling = true
		}
		if t.changed == nil {
			t.changed = make(chan struct{})
		}
		changed := t.changed
		t.mu.Unlock()

		if poll {
			err := t.load(ctx)
			t.mu.Lock()
			t.polling, t.polledAt = false, time.Now()
			t.mu.Unlock()
			if err != nil {
				lastErr = err
			}
			continue // load woke everybody if it learnt anything
		}
		var tick <-chan time.Time
		if t.backend != nil {
			if ticker == nil {
				ticker = time.NewTicker(t.cfg.PollInterval)
				defer ticker.Stop()
			}
			tick = ticker.C
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("cannot wait for %s to reach offset %d of partition %d (last read: %v): %w", t.cfg.Name, end, part, lastErr, ctx.Err())
			}
			return fmt.Errorf("cannot wait for %s to reach offset %d of partition %d: %w", t.cfg.Name, end, part, ctx.Err())
		case <-changed:
		case <-tick:
		case <-t.stop:
		}
	}
}

func (t *Tracker) reachedLocked(ends map[int32]int64) (int32, int64, bool) {
	for part, end := range ends {
		if t.viewLocked(part) < end {
			return part, end, false
		}
	}
	return 0, 0, true
}

func (t *Tracker) broadcastLocked() {
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
}

// load reads the backend's progress as the stored view. The view may move
// backwards — a backend that lost its data no longer vouches for it — but
// this process's own progress never does.
func (t *Tracker) load(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	defer cancel()
	got, err := t.backend.Load(ctx)
	if err != nil {
		return fmt.Errorf("cannot read the progress of %s: %w", t.cfg.Name, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.notePassedLocked(got)
	if !maps.Equal(got, t.stored) {
		t.stored = got
		t.broadcastLocked()
	}
	return nil
}

// notePassedLocked marks the partitions that got shows further than this
// process got them.
func (t *Tracker) notePassedLocked(got map[int32]int64) {
	for part, n := range got {
		if local, ok := t.local[part]; ok && n > local {
			if t.passed == nil {
				t.passed = map[int32]bool{}
			}
			t.passed[part] = true
		}
	}
}

// flush writes the dirty partitions (with all, every partition advanced
// here). On failure they stay dirty.
func (t *Tracker) flush(all bool) error {
	t.mu.Lock()
	next := make(map[int32]int64, len(t.dirty))
	for part := range t.local {
		if _, dirty := t.dirty[part]; dirty || (all && !t.passed[part]) {
			next[part] = t.local[part]
		}
	}
	clear(t.dirty)
	t.mu.Unlock()
	if len(next) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.Timeout)
	defer cancel()
	got, err := t.backend.Save(ctx, next)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		for part := range next {
			t.dirty[part] = struct{}{}
		}
		return fmt.Errorf("cannot write the progress of %s: %w", t.cfg.Name, err)
	}
	t.notePassedLocked(got)
	moved := false
	for part, n := range got {
		if n > t.stored[part] {
			t.stored[part], moved = n, true
		}
	}
	if moved {
		t.broadcastLocked()
	}
	return nil
}

// run is the background writer: it writes when something is dirty, at
// most once per FlushInterval (backing off while writes fail), and reads
// the backend again every RefreshInterval.
func (t *Tracker) run() {
	defer close(t.done)
	refresh := time.NewTicker(t.cfg.RefreshInterval)
	defer refresh.Stop()
	pause := time.NewTimer(0)
	<-pause.C
	failures := 0
	for {
		select {
		case <-t.stop:
			return
		case <-refresh.C:
			if t.cfg.Rewrite {
				_ = t.flush(true)
			}
			if err := t.load(context.Background()); err != nil {
				t.cfg.Logger.Debug("cannot refresh progress", "projection", t.cfg.Name, "err", err)
			}
			continue
		case <-t.kick:
		}
		wait := t.cfg.FlushInterval
		if err := t.flush(false); err != nil {
			failures++
			wait = min(t.cfg.FlushInterval<<min(failures, 10), time.Second)
			t.cfg.Logger.Warn("cannot write progress; will retry", "projection", t.cfg.Name, "in", wait, "err", err)
			select {
			case t.kick <- struct{}{}:
			default:
			}
		} else if failures > 0 {
			t.cfg.Logger.Info("progress written again", "projection", t.cfg.Name, "after_failures", failures)
			failures = 0
		}
		pause.Reset(wait)
		select {
		case <-t.stop:
			return
		case <-pause.C:
		}
	}
}

// Close stops the background writer and writes what is still unwritten;
// waiters give up with ErrClosed. Advances after Close are not written.
// Idempotent; it returns the error of the last write.
func (t *Tracker) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		t.mu.Unlock()
		close(t.stop)
		<-t.done
		if t.backend != nil {
			t.closeErr = t.flush(false)
		}
	})
	return t.closeErr
}
