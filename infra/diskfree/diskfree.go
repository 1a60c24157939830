// Package diskfree keeps a single node from filling its disk.
//
// The embedded store treats a failed write to its write-ahead log as
// fatal: the process stops, and starts again only once there is room. The
// event log, written first, fails cleanly (the send is answered
// unavailable), but the read models keep applying what it already holds,
// and a disk that fills between the two stops the process. A Guard looks
// at the free space under the node's directories and says when it falls
// below a floor, so that the node refuses new writes while the read
// models still have the floor's room to apply what was accepted.
package diskfree

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// ErrLow: the free space under a guarded directory is below the floor.
var ErrLow = errors.New("the disk is nearly full")

// Config tunes a Guard.
type Config struct {
	// Dirs are the directories whose file systems are looked at.
	Dirs []string
	// Floor is the least free space, in bytes, under which Err fails.
	Floor uint64
	// Every is how often the free space is looked at. Default 1 s.
	Every time.Duration
	// Logger gets a line when the space falls below the floor and when it
	// is back. Default slog.Default().
	Logger *slog.Logger
	// free, if set, replaces the file system's answer (tests).
	free func(dir string) (uint64, error)
}

// Guard is the free space under a node's directories, looked at now and
// then.
type Guard struct {
	cfg Config

	// mu serializes looks; last is what the last look found, read
	// without a lock by Err, which every write asks.
	mu   sync.Mutex
	seen bool
	last atomic.Pointer[found]
}

// found is a look's answer: the least free space, and what Err answers.
type found struct {
	least uint64
	err   error
}

// New returns a Guard that has looked once, so that a node started on a
// full disk refuses its first write.
func New(cfg Config) *Guard {
	if cfg.Every <= 0 {
		cfg.Every = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.free == nil {
		cfg.free = free
	}
	g := &Guard{cfg: cfg}
	g.last.Store(&found{})
	g.Look()
	return g
}

// Look reads the free space now and updates Err.
func (g *Guard) Look() {
	least, dir, failed := uint64(0), "", error(nil)
	for _, d := range g.cfg.Dirs {
		n, err := g.cfg.free(d)
		if err != nil {
			failed = fmt.Errorf("cannot read the free space under %s: %w", d, err)
			continue
		}
		if dir == "" || n < least {
			least, dir = n, d
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if failed != nil && !g.seen {
		g.cfg.Logger.Warn("the disk's free space is not known: writes are not held back", "err", failed)
	}
	if dir == "" && g.seen {
		return // nothing readable now: what the last look found stands
	}
	var err error
	if dir != "" && least < g.cfg.Floor {
		err = fmt.Errorf("%w: %d bytes free under %s, below the %d kept free (--min-free-disk)", ErrLow, least, dir, g.cfg.Floor)
	}
	was := g.last.Load().err
	g.last.Store(&found{least: least, err: err})
	switch {
	case err != nil && was == nil:
		g.cfg.Logger.Error("the disk is nearly full: writes are refused until it has room", "free", least, "dir", dir, "floor", g.cfg.Floor)
	case err == nil && was != nil:
		g.cfg.Logger.Info("the disk has room again: writes are taken", "free", least)
	}
	g.seen = true
}

// Err is nil while every directory has at least the floor free, else an
// error wrapping ErrLow, as of the last look. A directory whose space
// cannot be read does not hold writes back; when none can be read, the
// last look that read one stands.
func (g *Guard) Err() error {
	return g.last.Load().err
}

// Free is the least free space found under the directories at the last
// look, in bytes.
func (g *Guard) Free() uint64 {
	return g.last.Load().least
}

// Run looks every Config.Every until ctx ends.
func (g *Guard) Run(ctx context.Context) {
	t := time.NewTicker(g.cfg.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.Look()
		}
	}
}
