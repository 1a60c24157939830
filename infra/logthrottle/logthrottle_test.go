package logthrottle

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a buffer the handler's timer may write to while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

func newLogger(burst int, every time.Duration) (*slog.Logger, *syncBuffer) {
	out := &syncBuffer{}
	return slog.New(New(slog.NewTextHandler(out, nil), burst, every)), out
}

// A record repeated for every request writes burst lines in a period, then
// one line with the count of those held back (the last of them), and the
// next period starts afresh. Other kinds are counted apart, and loggers
// with attributes share their handler's counts.
func TestRepeatedRecordsAreCounted(t *testing.T) {
	const every = 200 * time.Millisecond
	log, out := newLogger(3, every)
	conn := log.With("component", "gateway")
	for i := range 100 {
		conn.Warn("request unavailable", "id", i)
		log.Warn("request unavailable", "id", i)
	}
	log.Info("something else")
	if got := out.lines(); len(got) != 4 {
		t.Fatalf("within the period: %d lines, want 3 and the other kind:\n%s", len(got), strings.Join(got, "\n"))
	}
	time.Sleep(every + every/2)
	got := out.lines()
	if len(got) != 5 {
		t.Fatalf("after the period: %d lines, want one more:\n%s", len(got), strings.Join(got, "\n"))
	}
	last := got[4]
	if !strings.Contains(last, "suppressed=197") || !strings.Contains(last, "id=99") || !strings.Contains(last, "request unavailable") {
		t.Errorf("the count's line: %s, want the last record held back with suppressed=197", last)
	}
	log.Warn("request unavailable", "id", "again")
	if got := out.lines(); len(got) != 6 || !strings.Contains(got[5], "id=again") {
		t.Errorf("a new period passes again: %s", strings.Join(got, "\n"))
	}
	time.Sleep(every + every/2)
	if got := out.lines(); len(got) != 6 {
		t.Errorf("nothing held back, nothing reported: %s", strings.Join(got, "\n"))
	}
}

// The kinds kept are bounded: past the bound, new kinds of a level share
// one count, so that messages that differ every time (a formatted error)
// cannot write without bound either.
func TestKindsAreBounded(t *testing.T) {
	log, out := newLogger(1, time.Hour)
	h := log.Handler().(*Handler)
	for i := range maxKinds + 100 {
		log.Error(fmt.Sprint("failed ", i))
	}
	h.st.mu.Lock()
	n := len(h.st.kinds)
	h.st.mu.Unlock()
	if n > maxKinds+1 {
		t.Errorf("%d kinds kept, want at most %d", n, maxKinds+1)
	}
	if got := out.lines(); len(got) != maxKinds+1 {
		t.Errorf("%d lines, want one per kind kept and one for the rest", len(got))
	}
}

// Flush writes what was held back at once, and the period's end then
// writes nothing more.
func TestFlushWritesWhatWasHeld(t *testing.T) {
	const every = 200 * time.Millisecond
	log, out := newLogger(1, every)
	for i := range 4 {
		log.Warn("request unavailable", "id", i)
	}
	log.Handler().(*Handler).Flush()
	got := out.lines()
	if len(got) != 2 || !strings.Contains(got[1], "suppressed=3") || !strings.Contains(got[1], "id=3") {
		t.Fatalf("after Flush: %s", strings.Join(got, "\n"))
	}
	time.Sleep(every + every/2)
	if got := out.lines(); len(got) != 2 {
		t.Errorf("the period's end wrote again: %s", strings.Join(got, "\n"))
	}
}
