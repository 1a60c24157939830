// Package apitest runs the operations of transport/api over an event log
// in memory and the in-memory read models a single node has, fed by the
// same projections through the same runner — no broker, no socket. It is
// for tests of the api and of the transports over it.
package apitest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections/cache"
	"github.com/parley-chat/parley/projections/conversations"
	"github.com/parley-chat/parley/projections/groups"
	"github.com/parley-chat/parley/projections/progress"
	"github.com/parley-chat/parley/projections/push"
	"github.com/parley-chat/parley/projections/runner"
	"github.com/parley-chat/parley/projections/runner/sourcetest"
	"github.com/parley-chat/parley/projections/store"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/wire"
)

// Partitions is the log's partition count.
const Partitions = 4

// Log is an api.Log in memory. Appends can be made to fail.
type Log struct {
	mem *sourcetest.Memory

	mu      sync.Mutex
	failing error
	hold    chan struct{} // while set, appends wait for it to close
}

var _ api.Log = (*Log)(nil)

// Append implements api.Log.
func (l *Log) Append(ctx context.Context, _ string, e events.Event) (events.Position, error) {
	return l.appendAt(ctx, events.PartitionFor(e.Key(), Partitions), e)
}

// AppendEvery implements api.Log.
func (l *Log) AppendEvery(ctx context.Context, _ string, e events.Event) ([]events.Position, error) {
	out := make([]events.Position, 0, Partitions)
	for p := range int32(Partitions) {
		pos, err := l.appendAt(ctx, p, e)
		if err != nil {
			return nil, err
		}
		out = append(out, pos)
	}
	return out, nil
}

func (l *Log) appendAt(ctx context.Context, p int32, e events.Event) (events.Position, error) {
	l.mu.Lock()
	hold := l.hold
	l.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			// As a broker's client does, the log still appends what its
			// caller stopped waiting for, once it can.
			pending := events.NewPendingAppend()
			go func() {
				<-hold
				pos, err := l.appendAt(context.Background(), p, e)
				pending.Settle(events.AppendOutcome{Pos: pos, Err: err})
			}()
			return events.Position{}, &events.LateAppend{Cause: ctx.Err(), Pending: pending}
		}
	}
	l.mu.Lock()
	failing := l.failing
	l.mu.Unlock()
	if failing != nil {
		return events.Position{}, failing
	}
	payload, err := events.Encode(e)
	if err != nil {
		return events.Position{}, err
	}
	// Memory gives the next offset of the partition; the lock keeps the
	// read of the end and the append together.
	l.mu.Lock()
	defer l.mu.Unlock()
	off := l.mem.Ends()[p]
	l.mem.Append(p, runner.RawRecord{Name: e.EventName(), Payload: payload, Timestamp: time.Now()})
	return events.Position{Partition: p, Offset: off}, nil
}

// Fail makes every append fail with err (nil: work again).
func (l *Log) Fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failing = err
}

// Hold makes appends wait until the returned function is called. An
// append whose context ends first returns an events.LateAppend and is
// made at the call (or fails, if Fail set an error by then).
func (l *Log) Hold() (release func()) {
	ch := make(chan struct{})
	l.mu.Lock()
	l.hold = ch
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.hold = nil
			l.mu.Unlock()
			close(ch)
		})
	}
}

// EndOffset implements api.Log.
func (l *Log) EndOffset(_ context.Context, partition int32) (int64, error) {
	return l.mem.Ends()[partition], nil
}

// EndOffsets implements api.Log.
func (l *Log) EndOffsets(context.Context) (map[int32]int64, error) {
	out := l.mem.Ends()
	for p := int32(0); p < Partitions; p++ {
		if _, written := out[p]; !written {
			out[p] = 0
		}
	}
	return out, nil
}

// Partitions implements api.Log.
func (l *Log) Partitions() int32 { return Partitions }

// Epoch implements api.Log.
func (l *Log) Epoch() uint8 { return 1 }

// Env is a service over a Log and in-memory read models.
type Env struct {
	Service *api.Service
	Log     *Log
	// Pushes gets every push the push projection makes.
	Pushes chan push.Push
	// Store and its progress, to hold a read model back in tests.
	Store         *store.Memory
	StoreProgress *progress.Tracker
}

type pushes chan push.Push

func (p pushes) Deliver(x push.Push) error {
	select {
	case p <- x:
	default: // nobody is looking
	}
	return nil
}

// Option changes an Env before it starts.
type Option func(*options)

type options struct {
	api    api.Config
	paused map[string]bool
}

// WithConfig sets the service's configuration.
func WithConfig(c api.Config) Option { return func(o *options) { o.api = c } }

// Without leaves the named projection (store.Name, cache.Name, ...) not
// running: its read model stays behind the log.
func Without(name string) Option { return func(o *options) { o.paused[name] = true } }

// New starts an Env for the test; it stops when the test ends.
func New(t testing.TB, opts ...Option) *Env {
	t.Helper()
	o := options{paused: map[string]bool{}}
	for _, f := range opts {
		f(&o)
	}
	mem := sourcetest.NewMemory()
	mem.MaxBatch = 100
	log := &Log{mem: mem}
	g, c := groups.NewMemory(), conversations.NewMemory()
	st, ch := store.NewMemory(), cache.NewMemory(cache.Retention).KeepEncoded(wire.EncodeMessage) // as a single node's
	rm := api.ReadModels{
		Store: st, StoreProgress: progress.NewMemory(),
		Cache: ch, CacheProgress: progress.NewMemory(),
		Groups: g, GroupsProgress: progress.NewMemory(),
		Conversations: c, ConversationsProgress: progress.NewMemory(),
	}
	env := &Env{Log: log, Pushes: make(chan push.Push, 1024), Store: st, StoreProgress: rm.StoreProgress.(*progress.Tracker)}
	specs := []runner.Spec{
		{Name: groups.Name, Projection: g, Tracker: rm.GroupsProgress},
		{Name: conversations.Name, Projection: c, Tracker: rm.ConversationsProgress},
		{Name: store.Name, Projection: store.NewProjection(st), Tracker: rm.StoreProgress},
		{Name: cache.Name, Projection: cache.NewProjection(ch, 1, true), Tracker: rm.CacheProgress},
		{Name: push.Name, Projection: push.NewProjection(pushes(env.Pushes), &groups.At{Model: g, Progress: rm.GroupsProgress}), Tracker: progress.NewMemory()},
	}
	var running []runner.Spec
	for _, s := range specs {
		if !o.paused[s.Name] {
			running = append(running, s)
		}
	}
	all := make([]int32, Partitions)
	for i := range all {
		all[i] = int32(i)
	}
	r := runner.New(runner.Config{Epoch: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MinBackoff: time.Millisecond},
		runner.Reader{Name: "apitest", Source: mem.Range(all, nil, nil), Specs: running})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("projections: %v", err)
		}
	})
	env.Service = api.New(o.api, log, rm)
	return env
}
