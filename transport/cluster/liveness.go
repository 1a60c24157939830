package cluster

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Liveness is what a gateway keeps in the route table about itself.
type Liveness interface {
	// Beat marks instance alive for a while (routes.AliveTTL).
	Beat(ctx context.Context, instance string) error
	// Forget marks instance dead at once.
	Forget(ctx context.Context, instance string) error
}

// Reasserter writes the routes of a gateway's connections again, and
// closes them all when the gateway's liveness lapses.
type Reasserter interface {
	Reassert(ctx context.Context)
	Fence() int
}

// KeepAlive beats instance's liveness every beat until ctx ends, and
// every reassert writes the gateway's routes again, so that routing state
// lost in Redis (a flush, an eviction) comes back. When ctx ends it
// forgets the instance, so that its routes can be taken over at once —
// unless crashed reports true (a fault test's abort leaves them to
// expire).
//
// A beat that fails is tried again every fifth of a beat until one works,
// so that a table back from an outage hears from the gateway within that,
// not at the next beat. A gateway that cannot beat for 2.5 beats (its
// liveness key, set for three, is about to lapse and another gateway may
// then take its devices over) closes every connection with route_lost:
// fencing, so that a device never has two live connections.
func KeepAlive(ctx context.Context, table Liveness, instance string, gw Reasserter, beat, reassert time.Duration, crashed func() bool, log *slog.Logger) {
	var lastOK atomic.Int64 // Unix nanoseconds of the start of the last beat that worked
	lastOK.Store(time.Now().UnixNano())
	failing := false // the last beat failed; only the loop below touches it
	beatOnce := func() {
		bctx, cancel := context.WithTimeout(context.Background(), min(2*time.Second, beat))
		defer cancel()
		started := time.Now()
		if err := table.Beat(bctx, instance); err != nil {
			if !failing {
				log.Warn("cannot beat liveness; trying again until it works", "err", err)
			}
			failing = true
			return
		}
		failing = false
		lastOK.Store(started.UnixNano()) // the key lives from when it was set, at the latest
	}
	// The fence is watched on a goroutine of its own, more often than
	// beats, so that the connections close before the key lapses, not at
	// the next beat nor after a reassert stuck on the unreachable table.
	watched := make(chan struct{})
	defer func() { <-watched }()
	go func() {
		defer close(watched)
		t := time.NewTicker(beat / 5)
		defer t.Stop()
		fenced := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			last := time.Unix(0, lastOK.Load())
			switch lapsing := time.Since(last) > beat*5/2; {
			case lapsing && !fenced:
				fenced = true
				n := gw.Fence()
				log.Error("liveness lapsing: closed every connection so that no device is served twice", "connections", n, "lastBeat", last)
			case !lapsing && fenced:
				fenced = false
				log.Info("liveness beats again")
			}
		}
	}()
	bt := time.NewTicker(beat)
	defer bt.Stop()
	retry := time.NewTicker(beat / 5)
	defer retry.Stop()
	again := time.NewTicker(reassert)
	defer again.Stop()
	beatOnce()
	for {
		select {
		case <-ctx.Done():
			if !crashed() {
				fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_ = table.Forget(fctx, instance)
				cancel()
			}
			return
		case <-bt.C:
			beatOnce()
		case <-retry.C:
			if failing {
				beatOnce()
			}
		case <-again.C:
			beatOnce()
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			gw.Reassert(rctx)
			cancel()
		}
	}
}

// Reaper releases the routes of dead instances (the route table).
type Reaper interface {
	Reap(ctx context.Context) (int, error)
}

// ReapDead asks table every interval, until ctx ends, to release the
// routes of every instance whose liveness lapsed: a crashed gateway's
// accounts turn offline within routes.AliveTTL plus interval of its last
// beat, with that beat as their LastSeen. Every gateway runs it; the table
// makes concurrent reaps safe.
func ReapDead(ctx context.Context, table Reaper, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		n, err := table.Reap(rctx)
		cancel()
		switch {
		case err != nil:
			log.Warn("cannot reap dead instances", "err", err)
		case n > 0:
			log.Info("released the routes of dead instances", "routes", n)
		}
	}
}
