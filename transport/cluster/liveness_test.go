package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// flakyTable fails the beats it is told to, by their number.
type flakyTable struct {
	mu    sync.Mutex
	beats int
	fail  func(n int) bool
}

func (f *flakyTable) Beat(context.Context, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.beats++
	if f.fail(f.beats) {
		return errors.New("the table is unreachable")
	}
	return nil
}

func (f *flakyTable) Forget(context.Context, string) error { return nil }

type fencedGateway struct{ fences atomic.Int64 }

func (g *fencedGateway) Reassert(context.Context) {}
func (g *fencedGateway) Fence() int               { g.fences.Add(1); return 0 }

// A beat that fails is tried again within a fifth of a beat: a table that
// comes back soon after (here, after two failed tries) hears from the
// gateway before its liveness lapses, and nothing is fenced — where the
// next beat, a whole beat later, would have come after the lapse. A table
// that stays away gets the gateway's connections closed.
func TestLivenessBeatsAgainSoonAfterAFailure(t *testing.T) {
	const beat = time.Second
	for _, tc := range []struct {
		name   string
		fail   func(n int) bool
		fenced bool
	}{
		{"back after two tries", func(n int) bool { return n == 2 || n == 3 }, false},
		{"away", func(n int) bool { return n >= 2 }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table, gw := &flakyTable{fail: tc.fail}, &fencedGateway{}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				KeepAlive(ctx, table, "gw1", gw, beat, time.Hour, func() bool { return false }, slog.New(slog.DiscardHandler))
			}()
			time.Sleep(beat*5/2 + beat) // past the lapse of the first beat, and a watch
			cancel()
			<-done
			if fenced := gw.fences.Load() > 0; fenced != tc.fenced {
				t.Fatalf("fenced %d times, want fenced %v", gw.fences.Load(), tc.fenced)
			}
		})
	}
}
