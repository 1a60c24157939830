package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

// maxInFlight bounds the sends waiting for an ack; past it the generator
// itself cannot keep the rate and counts what it skips.
const maxInFlight = 50000

// sendTimeout bounds one send's or sync's wait for its reply. A send
// without an ack by then is unacked: the server may still have accepted
// it, so its pushes are counted apart, never as lost or as errors.
const sendTimeout = 30 * time.Second

// device is one connection of the generator.
type device struct {
	account string
	c       *client.Client

	mu sync.Mutex
	// last is the highest msgid pushed to the device per conversation,
	// the one entry a conversation keeps for the whole run (see
	// verify.go); threads are the conversations with messages in flight
	// to the device, and early those of them holding pushes that came
	// before their sender's ack (what expire and result look at).
	last    map[convKey]int64
	threads map[convKey]*thread
	early   map[convKey]*thread
}

// load is one generator process's run.
type load struct {
	cfg     config
	devices []*device
	bodies  []string // texts the bodies cycle through, see body.go

	// Latencies of the whole run, and of the current interval.
	histMu                      sync.Mutex
	ackHist, pushHist, syncHist *hdrhistogram.Histogram
	ackCur, pushCur, syncCur    *hdrhistogram.Histogram

	mu      sync.Mutex
	errs    map[string]int // sends or syncs that failed, by reason
	sources map[string]int

	// verifying is set while sends are checked against pushes; the sync
	// scenario's prefill is not.
	verifying atomic.Bool
	track     tracker

	sent, ackN, unacked, pushN, syncN, skipped, inflight atomic.Int64
}

func runLoad(ctx context.Context, cfg config) (*Report, error) {
	l := &load{cfg: cfg, bodies: newBodies(cfg.BodyBytes), errs: map[string]int{}, sources: map[string]int{},
		ackHist: newHist(), pushHist: newHist(), syncHist: newHist(), ackCur: newHist(), pushCur: newHist(), syncCur: newHist()}
	n := cfg.Conns / cfg.Procs
	rate := cfg.Rate / float64(cfg.Procs)
	prefix := cfg.Prefix
	if cfg.child > 0 {
		prefix = fmt.Sprintf("%s-p%d", prefix, cfg.child)
	}
	// One process reads the server's metrics and fetches its profile: the
	// only one, or the first child.
	top := cfg.child <= 1
	rep := &Report{Config: cfg, Started: time.Now(), Errors: l.errs}
	rep.Memory.BeforeBytes = serverRSS(cfg.MetricsURL)
	if err := l.connect(ctx, prefix, n); err != nil {
		return nil, err
	}
	defer func() {
		for _, d := range l.devices {
			d.c.Close()
		}
	}()
	rep.Memory.AfterBytes = serverRSS(cfg.MetricsURL)
	if rep.Memory.BeforeBytes > 0 && rep.Memory.AfterBytes > 0 {
		rep.Memory.PerConnBytes = (rep.Memory.AfterBytes - rep.Memory.BeforeBytes) / float64(n)
	}
	l.logf("connected %d devices", n)

	next, err := l.schedule(ctx, prefix)
	if err != nil {
		return nil, err
	}

	// The measured window: from here to the last send's end.
	started := time.Now()
	w := l.watch(ctx, started, top)
	stopProgress := l.progress(started)
	l.verifying.Store(cfg.Scenario == "direct" || cfg.Scenario == "group")
	if cfg.Scenario == "idle" {
		select {
		case <-ctx.Done():
		case <-time.After(cfg.Duration):
		}
	} else {
		l.drive(ctx, rate, next)
	}
	w.stop(time.Now())
	if l.verifying.Load() {
		l.drain(ctx)
	}
	stopProgress()
	rep.Elapsed = w.ended.Sub(started).Seconds()
	rep.Sent, rep.Acked, rep.Pushes, rep.Syncs, rep.Backlog = l.sent.Load(), l.ackN.Load(), l.pushN.Load(), l.syncN.Load(), l.skipped.Load()
	rep.Unacked = l.unacked.Load()
	rep.AckRate = float64(rep.Acked) / rep.Elapsed
	rep.PushRate = float64(rep.Pushes) / rep.Elapsed
	rep.SyncRate = float64(rep.Syncs) / rep.Elapsed
	rep.SendToAck, rep.SendToPush, rep.SyncLat = summarize(l.ackHist), summarize(l.pushHist), summarize(l.syncHist)
	if cfg.Scenario == "fill" {
		l.settle(ctx, started, rep)
	}
	if cfg.child > 0 {
		rep.AckHist, rep.PushHist, rep.SyncHist = l.ackHist.Export(), l.pushHist.Export(), l.syncHist.Export()
	}
	if len(l.sources) > 0 {
		rep.Sources = l.sources
	}
	if err := w.report(rep); err != nil {
		return nil, err
	}
	if l.verifying.Load() {
		rep.Verify = l.track.result(l.devices)
	}
	rep.Verify.Closed = l.closedByServer()
	if cfg.Scenario == "idle" {
		rep.Memory.AfterBytes = serverRSS(cfg.MetricsURL)
		if rep.Memory.BeforeBytes > 0 && rep.Memory.AfterBytes > 0 {
			rep.Memory.PerConnBytes = (rep.Memory.AfterBytes - rep.Memory.BeforeBytes) / float64(n)
		}
	}
	return rep, nil
}

// schedule prepares the scenario (groups, prefilled conversations) and
// returns what the i-th request of the run does; nil for idle.
func (l *load) schedule(ctx context.Context, prefix string) (next func(i int64) func(context.Context), err error) {
	switch l.cfg.Scenario {
	case "direct":
		next = func(i int64) func(context.Context) {
			d, peer := l.pair(i)
			return func(ctx context.Context) { l.send(ctx, d, client.Target{Account: peer.account}, []*device{peer}, i) }
		}
	case "group":
		groups, err := l.makeGroups(ctx)
		if err != nil {
			return nil, err
		}
		next = func(i int64) func(context.Context) {
			g := groups[int(i)%len(groups)]
			d := g.members[int(i/int64(len(groups)))%len(g.members)]
			return func(ctx context.Context) { l.send(ctx, d, client.Target{Group: g.id}, g.members, i) }
		}
	case "fill":
		next = l.fillNext(prefix)
	case "sync":
		cursors, err := l.prefill(ctx)
		if err != nil {
			return nil, err
		}
		next = func(i int64) func(context.Context) {
			k := int(i) % len(l.devices)
			return func(ctx context.Context) { l.sync(ctx, l.devices[k], cursors[k]) }
		}
	}
	return next, nil
}

// record adds one latency to the run's histogram and to the current
// interval's (which intervals.close swaps, hence the pointer).
func (l *load) record(all *hdrhistogram.Histogram, cur **hdrhistogram.Histogram, d time.Duration) {
	us := min(max(d.Microseconds(), 1), histMax) // out of range is dropped, not clamped, by RecordValue
	l.histMu.Lock()
	_ = all.RecordValue(us)
	_ = (*cur).RecordValue(us)
	l.histMu.Unlock()
}

func (l *load) logf(format string, args ...any) {
	if l.cfg.progress {
		fmt.Fprintf(os.Stderr, "parley-bench: "+format+"\n", args...)
	}
}

// connect opens n devices, 64 at a time, spread over the source addresses.
func (l *load) connect(ctx context.Context, prefix string, n int) error {
	tokens, err := l.cfg.tokens()
	if err != nil {
		return err
	}
	l.devices = make([]*device, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		account := fmt.Sprintf("%s-%d", prefix, i)
		tok, err := tokens.Mint(domain.AccountID(account), "d", 24*time.Hour)
		if err != nil {
			return err
		}
		d := &device{account: account}
		l.devices[i] = d
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			ip := net.IPv4(127, 0, 0, byte(1+i%l.cfg.Sources))
			c, err := client.Dial(cctx, client.Config{URL: l.cfg.URL, Token: tok, LocalAddr: ip, RequestTimeout: sendTimeout})
			if err != nil {
				errs <- fmt.Errorf("device %d: %w", i, err)
				return
			}
			d.c = c
			go l.readPushes(d)
		}()
	}
	wg.Wait()
	close(errs)
	if err := firstError(errs); err != nil {
		// Close every device that did connect, once, so that a failed
		// start leaves no connections behind on the server.
		for _, d := range l.devices {
			if d.c != nil {
				d.c.Close()
			}
		}
		return fmt.Errorf("cannot connect: %w", err)
	}
	return nil
}

// firstError drains a closed channel of errors into one error: the first,
// and how many more there were, since thousands of connections tend to
// fail alike. It returns nil when the channel held none.
func firstError(errs <-chan error) error {
	var first error
	more := 0
	for err := range errs {
		if first == nil {
			first = err
		} else {
			more++
		}
	}
	if first != nil && more > 0 {
		return fmt.Errorf("%w (and %d more errors)", first, more)
	}
	return first
}

// send sends one message from d, once: a send refused (rate_limited,
// unavailable) or unanswered is counted as unacked by its reason, not
// retried, so that the offered rate stays what was asked for. members are
// the conversation's devices; every one but d is owed a push once acked.
func (l *load) send(ctx context.Context, d *device, to client.Target, members []*device, i int64) {
	start := time.Now()
	cid := fmt.Sprintf("%s-%d", l.cfg.Prefix, i)
	f, err := d.c.Do(ctx, wire.Request{Type: wire.TypeSend, To: to.Account, Group: to.Group, ClientMsgID: cid, Body: l.body(start, i)})
	if err != nil {
		l.unacked.Add(1)
		l.mu.Lock()
		l.errs[reason(err)]++
		l.mu.Unlock()
		return
	}
	l.ackN.Add(1)
	l.record(l.ackHist, &l.ackCur, time.Since(start))
	l.track.acked(f.Conversation, f.MsgID, d, members)
}

// pair picks the sender and the recipient of the direct scenario's i-th
// message. With --peers random, the default, both are uniform: any device
// to any other, so conversations are many and each is touched now and
// then, as with people. With --peers ring, device i sends to device i+1:
// few conversations, each always hot, as the first runs measured.
func (l *load) pair(i int64) (from, to *device) {
	n := len(l.devices)
	if l.cfg.Peers == "ring" {
		return l.devices[int(i)%n], l.devices[(int(i)+1)%n]
	}
	a := rand.IntN(n)
	b := rand.IntN(n - 1)
	if b >= a {
		b++
	}
	return l.devices[a], l.devices[b]
}

// reason names why a request got no answer: the server's error code, or
// what happened on the generator's side.
func reason(err error) string {
	if code := client.CodeOf(err); code != "" {
		return string(code)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, client.ErrClosed):
		return "closed"
	}
	return "transport"
}

func (l *load) readPushes(d *device) {
	for f := range d.c.Pushes() {
		m := f.Message
		if m == nil {
			continue
		}
		now := time.Now()
		l.pushN.Add(1)
		if at, ok := sentAt(m.Body); ok {
			l.record(l.pushHist, &l.pushCur, now.Sub(at))
		}
		if !l.verifying.Load() {
			continue
		}
		if m.From == d.account {
			// The push of its own send: not owed (the ack was the
			// answer), but it moves the device's cursor on.
			l.track.own(d, m.Conversation, m.MsgID, f.PrevMsgID)
			continue
		}
		l.track.pushed(d, m.Conversation, m.MsgID, f.PrevMsgID, now)
	}
}

// drive fires next(i) at rate per second, open loop: the schedule does not
// wait for acks. It returns when the duration is over and every send ended.
func (l *load) drive(parent context.Context, rate float64, next func(int64) func(context.Context)) {
	ctx, cancel := context.WithTimeout(parent, l.cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	var issued int64
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case now := <-t.C:
			due := int64(rate*now.Sub(start).Seconds()) - issued
			for ; due > 0; due-- {
				i := issued
				issued++
				if l.inflight.Load() >= maxInFlight {
					l.skipped.Add(1)
					continue
				}
				l.sent.Add(1)
				l.inflight.Add(1)
				wg.Add(1)
				fn := next(i)
				go func() {
					defer wg.Done()
					defer l.inflight.Add(-1)
					// A send outlives the schedule, so that the last ones
					// get their ack, but not an interrupt.
					rctx, rcancel := context.WithTimeout(parent, sendTimeout)
					defer rcancel()
					fn(rctx)
				}()
			}
		}
	}
}

// drain waits until every acked message was pushed to every recipient, or
// the drain time passed.
func (l *load) drain(ctx context.Context) {
	deadline := time.Now().Add(l.cfg.Drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if l.track.awaiting.Load() == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// closedByServer counts, by close code and reason, the devices whose
// connection ended before the generator closed it: their missing pushes
// show up as lost.
func (l *load) closedByServer() map[string]int {
	out := map[string]int{}
	for _, d := range l.devices {
		select {
		case <-d.c.Done():
			code, text := d.c.CloseReason()
			out[fmt.Sprintf("%d %s", code, text)]++
		default:
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// progress prints a line a second until stopped, and every ten seconds
// lets the tracker forget pushes whose ack can no longer come.
func (l *load) progress(started time.Time) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		ticks := 0
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				if ticks++; ticks%10 == 0 {
					l.track.expire(l.devices, now)
				}
				l.histMu.Lock()
				p99 := float64(l.ackHist.ValueAtQuantile(99)) / 1000
				pp99 := float64(l.pushHist.ValueAtQuantile(99)) / 1000
				l.histMu.Unlock()
				l.logf("%4.0fs sent %d acked %d pushes %d syncs %d in-flight %d skipped %d | ack p99 %.1fms push p99 %.1fms",
					time.Since(started).Seconds(), l.sent.Load(), l.ackN.Load(), l.pushN.Load(), l.syncN.Load(), l.inflight.Load(), l.skipped.Load(), p99, pp99)
			}
		}
	}()
	return func() { close(stop); <-done }
}

type group struct {
	id      string
	members []*device
}

// makeGroups splits the devices into groups of GroupSize, each created by
// its first member.
func (l *load) makeGroups(ctx context.Context) ([]group, error) {
	var out []group
	size := l.cfg.GroupSize
	for start := 0; start+size <= len(l.devices); start += size {
		members := l.devices[start : start+size]
		accounts := make([]string, 0, size-1)
		for _, m := range members[1:] {
			accounts = append(accounts, m.account)
		}
		g, err := members[0].c.CreateGroup(ctx, "bench", accounts...)
		if err != nil {
			return nil, fmt.Errorf("cannot create a group: %w", err)
		}
		out = append(out, group{id: g.Group, members: members})
	}
	l.logf("created %d groups of %d", len(out), size)
	return out, nil
}

// syncTarget is a conversation and a cursor 50 messages before its end.
type syncTarget struct {
	conv string
	cur  wire.Cursor
}

// prefill gives every device's conversation with the next 60 messages and
// returns, per device, a cursor 50 messages before the end.
func (l *load) prefill(ctx context.Context) ([]syncTarget, error) {
	n := len(l.devices)
	cursors := make([]syncTarget, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, d := range l.devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			peer := l.devices[(i+1)%n]
			for k := 0; k < 60; k++ {
				ack, err := d.c.Send(ctx, client.Target{Account: peer.account}, fmt.Sprintf("%s-pre-%d-%d", l.cfg.Prefix, i, k), "", l.body(time.Now(), int64(k)))
				if err != nil {
					errs <- err
					return
				}
				if k == 9 {
					cursors[i] = syncTarget{conv: ack.Conversation, cur: wire.Cursor{LastTime: l.cfg.syncLastTime().UnixMilli(), LastMsgID: ack.MsgID}}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := firstError(errs); err != nil {
		return nil, fmt.Errorf("cannot prefill: %w", err)
	}
	// Drop the prefill's pushes from the books: the storm measures syncs.
	time.Sleep(time.Second)
	l.pushN.Store(0)
	l.histMu.Lock()
	l.pushHist.Reset()
	l.pushCur.Reset()
	l.histMu.Unlock()
	l.logf("prefilled %d conversations with 60 messages", n)
	return cursors, nil
}

func (l *load) sync(ctx context.Context, d *device, t syncTarget) {
	start := time.Now()
	f, err := d.c.Sync(ctx, t.conv, t.cur, 50)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.errs[reason(err)+"(sync)"]++
		return
	}
	l.syncN.Add(1)
	l.sources[f.Source]++
	if len(f.Messages) != 50 {
		l.errs["short_sync"]++
	}
	l.record(l.syncHist, &l.syncCur, time.Since(start))
}
