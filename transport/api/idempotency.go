package api

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/idempotency"
)

// Reservations is the idempotency port: (account, clientMsgId) is reserved
// before the append, so that a resend finds the first attempt however far
// the store lags (infra/idempotency).
type Reservations = idempotency.Reservations

// reservationLease is how long an attempt holds its reservation without
// renewing it; the attempt renews it every third of that while it runs, so
// only an attempt whose process died loses it.
const reservationLease = 10 * time.Second

// finished is an ack this process completed, kept until the store holds it
// and its reservation can be forgotten.
type finished struct {
	key  idempotency.Key
	pos  events.Position
	held bool // the store held it already
	at   time.Time
}

// forgetting is the list of reservations to forget once the store holds
// their messages.
type forgetting struct {
	mu   sync.Mutex
	list []finished
}

func (f *forgetting) add(x finished) {
	f.mu.Lock()
	f.list = append(f.list, x)
	f.mu.Unlock()
}

// once answers a send exactly once per (account, clientMsgId): with the
// original ack if an attempt finished, after waiting (at most ReadTimeout)
// for an attempt under way, or by making this the attempt: look the id up
// in the store (after the store holds every partition an earlier attempt
// may have reached) and append only if it is not there.
func (s *Service) once(ctx context.Context, c claim, conv domain.ConversationID, send func() (Ack, events.Position, error)) (Ack, error) {
	key := c.key
	part := events.PartitionFor(conv.String(), s.log.Partitions())
	deadline := time.Now().Add(s.cfg.ReadTimeout)
	pause := 2 * time.Millisecond
	for {
		e, err := s.cfg.Reservations.Reserve(ctx, key, part, reservationLease, s.cfg.ReservationTTL)
		if err != nil {
			return Ack{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		switch e.State {
		case idempotency.Done:
			ack := Ack{MsgID: e.Ack.MsgID, MessageID: e.Ack.MessageID, Conversation: e.Ack.Conversation, ServerTime: e.Ack.ServerTime, Duplicate: true}
			if c.fits != nil {
				if err := c.fits(ack); err != nil {
					return Ack{}, err
				}
			}
			return ack, nil
		case idempotency.Reserved:
			return s.attempt(ctx, c, e, send)
		}
		if time.Now().After(deadline) {
			return Ack{}, fmt.Errorf("the first attempt of this client message id is still under way: %w", ErrUnavailable)
		}
		select {
		case <-ctx.Done():
			return Ack{}, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// claim is a request made at most once per key: a send, or an edit.
type claim struct {
	key idempotency.Key
	// retry is set when the client says it repeats an attempt.
	retry bool
	// lookup finds the request's result in the store, once the store
	// holds every partition an earlier attempt may have reached.
	lookup func(ctx context.Context) (Ack, bool, error)
	// fits, if set, checks that the answer of the request that used the
	// key first is one this request may get: an edit's key reused for
	// another message is refused, not answered with that edit's ack.
	fits func(Ack) error
	// cost is what the request took from its sender's send budget: given
	// back when the log says, after the client heard unavailable, that
	// its record did not land.
	cost charge
}

// sendClaim is the claim of a send: its client message id, found in the
// store as the message it made — or as the message an edit with that id
// changed, whose ack the send then gets (a key names one request), with
// the time of the message's latest edit, as an edit's retry would.
func (s *Service) sendClaim(r SendRequest) claim {
	return claim{
		key:   idempotency.Key{Account: r.From.Account, ClientMsgID: r.ClientMsgID},
		retry: r.Retry,
		lookup: func(ctx context.Context) (Ack, bool, error) {
			m, found, err := s.rm.Store.ByClientMsgID(ctx, r.From.Account, r.ClientMsgID)
			if err != nil || !found {
				return Ack{}, false, err
			}
			at := m.ServerTime
			if m.ClientMsgID != r.ClientMsgID {
				at = m.EditedAt
			}
			return Ack{MsgID: m.MsgID, MessageID: m.ID, Conversation: m.Conversation, ServerTime: at, Duplicate: true}, true, nil
		},
	}
}

// attempt runs the request that holds the reservation e of c's key.
func (s *Service) attempt(ctx context.Context, c claim, e idempotency.Entry, send func() (Ack, events.Position, error)) (Ack, error) {
	key := c.key
	s.leases.hold(key, e.Token)
	abandon := func(err error) (Ack, error) {
		s.abandon(ctx, key, e.Token)
		return Ack{}, err
	}
	earlier := e.Earlier
	if c.retry && len(earlier) == 0 {
		// A retry that finds no reservation: it expired, was forgotten, or
		// was lost with Redis. The first attempt, if it landed, may be in
		// any partition, so the store must hold them all.
		earlier = nil
		for p := int32(0); p < s.log.Partitions(); p++ {
			earlier = append(earlier, p)
		}
	}
	if err := s.catchUpPartitions(ctx, s.rm.StoreProgress, earlier); err != nil {
		return abandon(err)
	}
	ack, found, err := c.lookup(ctx)
	if err != nil {
		var invalid *domain.InvalidError
		if errors.As(err, &invalid) {
			return abandon(err)
		}
		return abandon(fmt.Errorf("cannot check client message id: %w: %v", ErrUnavailable, err))
	}
	var pos events.Position
	if !found {
		if s.undecidedFull() {
			return abandon(fmt.Errorf("%d sends wait for the log to say whether their records landed: %w", s.maxUndecided, ErrUnavailable))
		}
		ack, pos, err = send()
	}
	if err != nil {
		if u, ok := asUndecided(err); ok {
			s.settleLater(ctx, key, e.Token, u, c.cost)
			return Ack{}, err
		}
		// The log said the record did not land.
		return abandon(err)
	}
	if !s.cfg.CompleteAfterAck {
		s.complete(ctx, key, e.Token, ack, pos, found)
		return ack, nil
	}
	// The ack goes out before the completion is written. That changes
	// when a resend sees the ack, never what it gets: the completion only
	// turns the pending reservation into a done one. Until it lands, the
	// reservation stays pending under this attempt's lease (renewed until
	// complete returns), so a resend through any gateway waits for it, as
	// for any attempt under way, and then gets this ack. If it never lands
	// (Redis fails, or this process dies), the lease lapses and the next
	// resend takes the reservation over with this partition among its
	// earlier ones: it waits until the store holds the partition and
	// finds the message there — the path a failed Complete took before.
	s.completing.Go(func() { s.complete(ctx, key, e.Token, ack, pos, found) })
	return ack, nil
}

// abandon gives the reservation up at once, for the next attempt to take
// over: this one appended nothing.
func (s *Service) abandon(ctx context.Context, key idempotency.Key, token string) {
	defer s.leases.release(key, token)
	// Written even if the client went away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ReadTimeout)
	defer cancel()
	if err := s.cfg.Reservations.Abandon(ctx, key, token); err != nil && !errors.Is(err, idempotency.ErrNotOwner) {
		s.cfg.Logger.Warn("cannot abandon a client message id's reservation; it lapses after its lease", "err", err)
	}
}

// complete records the reservation's ack, for a resend to get.
func (s *Service) complete(ctx context.Context, key idempotency.Key, token string, ack Ack, pos events.Position, held bool) {
	defer s.leases.release(key, token)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ReadTimeout)
	defer cancel()
	rec := idempotency.Ack{MsgID: ack.MsgID, MessageID: ack.MessageID, Conversation: ack.Conversation, ServerTime: ack.ServerTime}
	if err := s.cfg.Reservations.Complete(ctx, key, token, rec, s.cfg.ReservationTTL); err != nil {
		// The message is in the log; a later resend takes the lapsed
		// reservation over and finds it in the store.
		s.cfg.Logger.Warn("cannot record the ack of a client message id", "err", err)
		return
	}
	s.forget.add(finished{key: key, pos: pos, held: held, at: time.Now()})
}

// undecided is the error of a request whose record the log may still
// append: the log stopped waiting for it (events.LateAppend). The client
// hears err (unavailable) now; pending settles later, and ackAt makes
// the ack from where the record landed, as the request would have.
type undecided struct {
	err     error
	pending *events.PendingAppend
	ackAt   func(events.Position) (Ack, error)
}

func (u *undecided) Error() string { return u.err.Error() }

// asUndecided finds the undecided in err's chain. (Its target escapes to
// the heap: callers ask only when there is an error.)
func asUndecided(err error) (*undecided, bool) {
	var u *undecided
	ok := errors.As(err, &u)
	return u, ok
}
func (u *undecided) Unwrap() error { return u.err }

// appendFor appends e for a request whose ack is made from where its
// record lands.
func (s *Service) appendFor(ctx context.Context, id string, e events.Event, ackAt func(events.Position) (Ack, error)) (Ack, events.Position, error) {
	pos, err := s.append(ctx, id, e)
	var late *events.LateAppend
	switch {
	case errors.As(err, &late):
		return Ack{}, events.Position{}, &undecided{err: fmt.Errorf("%w: %v", ErrUnavailable, err), pending: late.Pending, ackAt: ackAt}
	case err != nil:
		return Ack{}, events.Position{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	ack, err := ackAt(pos)
	return ack, pos, err
}

// settleLater keeps the reservation of an attempt whose record the log
// may still append, under this attempt's lease, until the log knows: a
// record that lands completes it with the ack the client would have had
// (a resend gets that ack), one that does not abandons it (a resend
// appends). Abandoning it at once instead would let a resend look for
// the message before it lands, miss it and append it a second time.
// Nothing waits in the meantime but the lease's entry: the log calls
// back. When the service stops first, the lease is let go of and the
// reservation lapses after it, as after a crash. A node lets its log
// settle what it can before that (kafka.Log.Settle, at most its append
// timeout): what is left is a record whose broker did not answer in all
// that time, which lands only if its bytes reach the broker later still.
func (s *Service) settleLater(ctx context.Context, key idempotency.Key, token string, u *undecided, cost charge) {
	h := heldLease{key, token}
	s.undecidedMu.Lock()
	if s.stopped {
		s.undecidedMu.Unlock()
		s.leases.release(key, token)
		return
	}
	s.undecided[h] = struct{}{}
	s.undecidedN.Store(int32(len(s.undecided)))
	s.undecidedMu.Unlock()
	u.pending.Then(func(o events.AppendOutcome) {
		s.undecidedMu.Lock()
		defer s.undecidedMu.Unlock()
		if _, mine := s.undecided[h]; !mine {
			return // the service stopped: the reservation lapses
		}
		delete(s.undecided, h)
		s.undecidedN.Store(int32(len(s.undecided)))
		// Started under the lock, so that a Run ending meanwhile
		// (stopSettling, then completing.Wait) waits for it; and off the
		// log's goroutine, which calls back.
		s.completing.Go(func() {
			if o.Err == nil {
				if ack, err := u.ackAt(o.Pos); err == nil {
					s.complete(ctx, key, token, ack, o.Pos, false)
					return
				}
			} else {
				cost.giveBack() // the record did not land
			}
			s.abandon(ctx, key, token)
		})
	})
}

// maxUndecided bounds the reservations held for records the log may
// still append. Each costs a lease renewal every few seconds and the
// record in the producer's buffer; they pile up only while the broker
// does not answer, when a send could not be acked anyway, so past the
// bound a send is refused before it appends anything.
const maxUndecided = 10000

// Undecided is how many sends wait for the log to say whether their
// records landed (their clients heard unavailable; their reservations
// are held until then): nonzero while a broker does not answer.
func (s *Service) Undecided() int { return int(s.undecidedN.Load()) }

// undecidedFull reports whether maxUndecided reservations wait for the
// log. Every send asks: an atomic read, not the lock.
func (s *Service) undecidedFull() bool {
	return int(s.undecidedN.Load()) >= s.maxUndecided
}

// stopSettling lets go of the reservations still waiting for the log:
// they lapse after their leases.
func (s *Service) stopSettling() {
	s.undecidedMu.Lock()
	s.stopped = true
	held := s.undecided
	s.undecided = nil
	s.undecidedN.Store(0)
	s.undecidedMu.Unlock()
	for h := range held {
		s.leases.release(h.key, h.token)
	}
}

// tracker counts goroutines so that their owner can wait for them. Unlike
// a sync.WaitGroup it may start one while another caller waits.
type tracker struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; nil while n is 0
}

// Go runs f in a goroutine that Wait waits for.
func (t *tracker) Go(f func()) {
	t.mu.Lock()
	if t.n == 0 {
		t.idle = make(chan struct{})
	}
	t.n++
	t.mu.Unlock()
	go func() {
		defer t.done()
		f()
	}()
}

func (t *tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 {
		close(t.idle)
		t.idle = nil
	}
	t.mu.Unlock()
}

// Wait returns once no goroutine started by Go runs.
func (t *tracker) Wait() {
	t.mu.Lock()
	idle := t.idle
	t.mu.Unlock()
	if idle != nil {
		<-idle
	}
}

// catchUpAll waits until each of ts has applied everything in every
// partition of the log now (the caller bounds ctx).
func (s *Service) catchUpAll(ctx context.Context, ts ...Progress) error {
	ends, err := s.log.EndOffsets(ctx)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for _, t := range ts {
		if err := t.WaitForAll(ctx, ends); err != nil {
			return fmt.Errorf("read model is behind the log: %w: %v", ErrUnavailable, err)
		}
	}
	return nil
}

// catchUpPartitions waits until t has applied everything in parts that is
// in the log now.
func (s *Service) catchUpPartitions(ctx context.Context, t Progress, parts []int32) error {
	if len(parts) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	for _, p := range parts {
		end, err := s.log.EndOffset(ctx, p)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		if err := t.WaitFor(ctx, p, end); err != nil {
			return fmt.Errorf("read model is behind the log: %w: %v", ErrUnavailable, err)
		}
	}
	return nil
}

// forgetAfter is how long a completed reservation is kept after its ack
// once the store holds its message, and how often the service looks for
// such reservations. A resend within it is answered from the reservation;
// a later one from the store, as after a restart. Every reservation held
// is in the heap that each garbage collection marks (5 s held five times
// as many, at thousands of sends a second: docs/benchmarks.md).
const forgetAfter = time.Second

// Run does the service's housekeeping until ctx ends: every forgetAfter
// it forgets the reservations of acks older than that whose messages the
// store holds (it answers for them from then on), so that the
// reservations hold a second or two of acks, not a TTL's worth. When ctx
// ends it waits for the completions still being written after their acks
// (each ends within ReadTimeout).
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(forgetAfter)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.stopSettling()
			s.completing.Wait()
			return
		case <-t.C:
			s.SweepIdempotency(forgetAfter)
		}
	}
}

// SweepIdempotency forgets the reservations this process completed that
// are older than minAge and whose messages the store holds.
func (s *Service) SweepIdempotency(minAge time.Duration) {
	cutoff := time.Now().Add(-minAge)
	s.forget.mu.Lock()
	var due []idempotency.Key
	keep := s.forget.list[:0]
	for _, f := range s.forget.list {
		if !f.at.After(cutoff) && (f.held || s.rm.StoreProgress.Next(f.pos.Partition) > f.pos.Offset) {
			due = append(due, f.key)
		} else {
			keep = append(keep, f)
		}
	}
	clear(s.forget.list[len(keep):])
	s.forget.list = keep
	s.forget.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ReadTimeout)
	defer cancel()
	if len(due) == 0 {
		return
	}
	if err := s.cfg.Reservations.Forget(ctx, due...); err != nil {
		// They expire after their TTL instead.
		s.cfg.Logger.Warn("cannot forget client message ids' reservations", "keys", len(due), "err", err)
	}
}
