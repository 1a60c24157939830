// Package logthrottle bounds the lines one kind of log record writes.
//
// A failure that repeats for every request — a full disk, a lost broker,
// a read model that cannot answer — would otherwise write a line per
// request: thousands a second, on the disk that may be the one filling.
// A Handler lets the first few records of each level and message through
// in a period and counts the rest; as the period ends it writes the last
// record it held back, with how many it held back (`suppressed`).
package logthrottle

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Defaults: five records of a kind every ten seconds.
const (
	DefaultBurst = 5
	DefaultEvery = 10 * time.Second
)

// maxKinds bounds the kinds a Handler keeps: past it, the kinds whose
// period is over are forgotten, and if that is not enough every new kind
// of a level shares one count.
const maxKinds = 1024

type kindKey struct {
	level slog.Level
	msg   string
}

// kind is one level and message in its current period.
type kind struct {
	start  time.Time
	passed int
	// held counts the records held back in the period; last is the last
	// of them, and via the handler (with its attributes) it came through.
	held int
	last slog.Record
	via  slog.Handler
}

// state is shared by a Handler and those its WithAttrs and WithGroup
// return.
type state struct {
	burst int
	every time.Duration
	mu    sync.Mutex
	kinds map[kindKey]*kind
}

// Handler passes at most burst records of each level and message every
// period to the handler it wraps.
type Handler struct {
	next slog.Handler
	st   *state
}

// New wraps next: of the records of one level and message, burst pass
// every period; the rest are held back and counted, and the last of them
// is written with the count (`suppressed`) as the period ends.
func New(next slog.Handler, burst int, every time.Duration) *Handler {
	if burst <= 0 {
		burst = DefaultBurst
	}
	if every <= 0 {
		every = DefaultEvery
	}
	return &Handler{next: next, st: &state{burst: burst, every: every, kinds: map[kindKey]*kind{}}}
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// WithAttrs implements slog.Handler; the result shares h's counts.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{next: h.next.WithAttrs(as), st: h.st}
}

// WithGroup implements slog.Handler; the result shares h's counts.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), st: h.st}
}

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	st := h.st
	now := time.Now()
	st.mu.Lock()
	k := st.kindOf(kindKey{r.Level, r.Message}, now)
	if k.passed < st.burst {
		k.passed++
		st.mu.Unlock()
		return h.next.Handle(ctx, r)
	}
	k.held++
	k.last, k.via = r.Clone(), h.next
	if k.held == 1 {
		time.AfterFunc(k.start.Add(st.every).Sub(now), func() { st.report(k) })
	}
	st.mu.Unlock()
	return nil
}

// kindOf is the kind of key, in a period that includes now. mu is held.
func (st *state) kindOf(key kindKey, now time.Time) *kind {
	k := st.kinds[key]
	if k == nil {
		if len(st.kinds) >= maxKinds {
			st.forget(now)
		}
		if len(st.kinds) >= maxKinds {
			key.msg = "" // every new kind of the level, together
			if k = st.kinds[key]; k != nil {
				return st.current(k, now)
			}
		}
		k = &kind{start: now}
		st.kinds[key] = k
		return k
	}
	return st.current(k, now)
}

// current starts k's next period if its last one is over and nothing it
// held back waits to be written (report then starts it).
func (st *state) current(k *kind, now time.Time) *kind {
	if k.held == 0 && now.Sub(k.start) >= st.every {
		k.start, k.passed = now, 0
	}
	return k
}

// forget drops the kinds whose period is over with nothing held. mu is
// held.
func (st *state) forget(now time.Time) {
	for key, k := range st.kinds {
		if k.held == 0 && now.Sub(k.start) >= st.every {
			delete(st.kinds, key)
		}
	}
}

// Flush writes, for every kind, the last record held back and the count,
// now rather than at its period's end: before the process exits.
func (h *Handler) Flush() {
	st := h.st
	st.mu.Lock()
	var held []*kind
	for _, k := range st.kinds {
		if k.held > 0 {
			held = append(held, k)
		}
	}
	st.mu.Unlock()
	for _, k := range held {
		st.report(k)
	}
}

// report writes the last record k held back in its period, with the
// count, and starts k's next period.
func (st *state) report(k *kind) {
	st.mu.Lock()
	r, via, n := k.last, k.via, k.held
	if n == 0 {
		st.mu.Unlock()
		return // written already (Flush, then the period's end)
	}
	k.start, k.passed, k.held, k.last, k.via = time.Now(), 0, 0, slog.Record{}, nil
	st.mu.Unlock()
	r.AddAttrs(slog.Int("suppressed", n), slog.Duration("within", st.every))
	_ = via.Handle(context.Background(), r)
}
