package cluster

import (
	"context"
	"log/slog"
	"time"
)

// Liveness is what a gateway keeps in the route table about itself.
type Liveness interface {
	// Beat marks instance alive for a while (routes.AliveTTL).
	Beat(ctx context.Context, instance string) error
	// Forget marks instance dead at once.
	Forget(ctx context.Context, instance string) error
}

// Reasserter writes the routes of a gateway's connections again.
type Reasserter interface {
	Reassert(ctx context.Context)
}

// KeepAlive beats instance's liveness every beat until ctx ends, and
// every reassert writes the gateway's routes again, so that routing state
// lost in Redis (a flush, an eviction) comes back. When ctx ends it
// forgets the instance, so that its routes can be taken over at once —
// unless crashed reports true (a fault test's abort leaves them to
// expire).
func KeepAlive(ctx context.Context, table Liveness, instance string, gw Reasserter, beat, reassert time.Duration, crashed func() bool, log *slog.Logger) {
	beatOnce := func() {
		bctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := table.Beat(bctx, instance); err != nil {
			log.Warn("cannot beat liveness", "err", err)
		}
	}
	bt := time.NewTicker(beat)
	defer bt.Stop()
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
		case <-again.C:
			beatOnce()
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			gw.Reassert(rctx)
			cancel()
		}
	}
}
