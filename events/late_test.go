package events_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/parley-chat/parley/events"
)

// A pending append's outcome reaches the one callback asked for once,
// whether it was asked for before or after the log settled it, and
// whichever comes first when both race; later settles do not count.
func TestPendingAppendTellsItsOutcomeOnce(t *testing.T) {
	landed := events.AppendOutcome{Pos: events.Position{Partition: 2, Offset: 7}}
	for _, tc := range []struct {
		name        string
		settleFirst bool
	}{{"callback set first", false}, {"settled first", true}} {
		t.Run(tc.name, func(t *testing.T) {
			p := events.NewPendingAppend()
			var got []events.AppendOutcome
			then := func(o events.AppendOutcome) { got = append(got, o) }
			if tc.settleFirst {
				p.Settle(landed)
			}
			p.Then(then)
			p.Then(then)
			p.Settle(landed)
			p.Settle(events.AppendOutcome{Err: errors.New("late")})
			select {
			case <-p.Done():
			default:
				t.Fatal("Done open after Settle")
			}
			if len(got) != 1 || got[0] != landed || p.Outcome() != landed {
				t.Fatalf("callbacks %+v, outcome %+v, want %+v once", got, p.Outcome(), landed)
			}
		})
	}
	t.Run("race", func(t *testing.T) {
		for range 1000 {
			p := events.NewPendingAppend()
			var mu sync.Mutex
			calls := 0
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); p.Settle(landed) }()
			go func() {
				defer wg.Done()
				p.Then(func(events.AppendOutcome) { mu.Lock(); calls++; mu.Unlock() })
			}()
			wg.Wait()
			if calls != 1 {
				t.Fatalf("callback called %d times", calls)
			}
		}
	})
}
