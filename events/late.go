package events

import "sync"

// LateAppend is the error of an append its caller stopped waiting for
// before the log answered: the record is still on its way and may land
// later, so the append's outcome is not known yet — unlike any other
// error of an append, which ends it. A caller that must not append a
// record twice (a send under a client message id) waits for the outcome
// before it lets another attempt try again.
type LateAppend struct {
	// Cause is why the caller stopped waiting: its context's error.
	Cause error
	// Pending gets the append's outcome once the log has it.
	Pending *PendingAppend
}

func (e *LateAppend) Error() string {
	return "the append is still under way: " + e.Cause.Error()
}

func (e *LateAppend) Unwrap() error { return e.Cause }

// AppendOutcome is how an append ended.
type AppendOutcome struct {
	Pos Position
	Err error // nil when the record landed at Pos
}

// PendingAppend is the outcome of an append under way. The log settles it
// once; its caller waits on Done, or, having stopped waiting, asks to hear
// of it with Then — a callback, not a goroutine, because appends given up
// on pile up while a broker is unreachable (as many as the producer
// buffers) and each would hold a goroutine's stack until it heals.
type PendingAppend struct {
	done chan struct{}

	mu      sync.Mutex
	settled bool
	outcome AppendOutcome
	then    func(AppendOutcome)
	asked   bool // Then was called
}

// NewPendingAppend returns an outcome not settled yet.
func NewPendingAppend() *PendingAppend {
	return &PendingAppend{done: make(chan struct{})}
}

// Settle records the outcome, closes Done and calls the callback Then
// set, if any, on the caller's goroutine. Only the first call counts.
func (p *PendingAppend) Settle(o AppendOutcome) {
	p.mu.Lock()
	if p.settled {
		p.mu.Unlock()
		return
	}
	p.settled, p.outcome = true, o
	then := p.then
	p.then = nil
	p.mu.Unlock()
	close(p.done)
	if then != nil {
		then(o)
	}
}

// Done is closed once the outcome is settled.
func (p *PendingAppend) Done() <-chan struct{} { return p.done }

// Outcome is the settled outcome; call it after Done is closed.
func (p *PendingAppend) Outcome() AppendOutcome {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.outcome
}

// Then calls f with the outcome once: at once if it is settled, else on
// the goroutine that settles it (the log's), so f must not block. Only
// the first call counts.
func (p *PendingAppend) Then(f func(AppendOutcome)) {
	p.mu.Lock()
	if p.asked {
		p.mu.Unlock()
		return
	}
	p.asked = true
	if !p.settled {
		p.then = f
		p.mu.Unlock()
		return
	}
	o := p.outcome
	p.mu.Unlock()
	f(o)
}
