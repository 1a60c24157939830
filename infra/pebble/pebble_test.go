package pebble

import (
	"log/slog"
	"testing"
	"time"
)

// A stall counts from its beginning, while under way and after it ends;
// an end without a beginning changes nothing.
func TestStallsCountTheStallUnderWay(t *testing.T) {
	var s Stalls
	s.end()
	if s.Count() != 0 || s.Duration() != 0 {
		t.Fatalf("before any stall: %d stalls, %v", s.Count(), s.Duration())
	}
	s.begin(slog.New(slog.DiscardHandler), "memtable count limit reached")
	time.Sleep(20 * time.Millisecond)
	if under := s.Duration(); s.Count() != 1 || under < 20*time.Millisecond {
		t.Fatalf("during a stall: %d stalls, %v; want 1, at least 20ms", s.Count(), under)
	}
	s.end()
	ended := s.Duration()
	time.Sleep(10 * time.Millisecond)
	if s.Duration() != ended || ended < 20*time.Millisecond {
		t.Fatalf("after the stall: %v, then %v; want it fixed at at least 20ms", ended, s.Duration())
	}
	s.end()
	if s.Count() != 1 || s.Duration() != ended {
		t.Fatalf("a second end: %d stalls, %v", s.Count(), s.Duration())
	}
}
