package runner_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/progress"
	"github.com/parley-chat/parley/projections/runner"
	"github.com/parley-chat/parley/projections/runner/sourcetest"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// message is a valid MessageSent record of conversation d:a:b.
func message(t *testing.T, body string) runner.RawRecord {
	t.Helper()
	e := events.MessageSent{MessageID: uuid.NewString(), ClientMsgID: "c-" + body, Conversation: "d:a:b",
		SenderAccount: "a", SenderDevice: "phone", Kind: "text", Body: body, ServerTime: 1}
	payload, err := events.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return runner.RawRecord{Name: e.EventName(), Payload: payload, Timestamp: time.UnixMilli(1)}
}

// recorder is a projection that remembers the bodies it applied and can be
// told to fail.
type recorder struct {
	mu     sync.Mutex
	bodies []string
	fail   func(projections.Record) error
}

func (r *recorder) Apply(_ context.Context, rec projections.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		if err := r.fail(rec); err != nil {
			return err
		}
	}
	m, ok, err := rec.Message()
	if err != nil || !ok {
		return err
	}
	r.bodies = append(r.bodies, m.Body)
	return nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

type counts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counts) Skipped(projection, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[projection+"/"+reason]++
}

func (c *counts) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

func run(t *testing.T, r *runner.Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func waitApplied(t *testing.T, tr projections.Tracker, ends map[int32]int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := tr.WaitForAll(ctx, ends); err != nil {
		t.Fatal(err)
	}
}

// A projection that fails is given the same records again, its progress
// unmoved meanwhile, until it succeeds: nothing is skipped.
func TestTransientFailureIsRetriedWithoutMovingProgress(t *testing.T) {
	log := sourcetest.NewMemory()
	log.Append(0, message(t, "one"), message(t, "two"), message(t, "three"))
	var failing sync.Mutex
	failing.Lock()
	p := &recorder{}
	attempts := 0
	p.fail = func(rec projections.Record) error {
		if rec.Position.Offset != 1 {
			return nil
		}
		attempts++
		if failing.TryLock() {
			failing.Unlock()
			return nil
		}
		return errors.New("database unavailable")
	}
	tr := progress.NewMemory()
	r := runner.New(runner.Config{Logger: quiet(), MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond},
		runner.Reader{Name: "test", Source: log.Range([]int32{0}, nil, nil), Specs: []runner.Spec{{Name: "recorder", Projection: p, Tracker: tr}}})
	run(t, r)
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		n := attempts
		p.mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the failing record was not retried")
		}
		time.Sleep(time.Millisecond)
	}
	if next := tr.Next(0); next > 1 {
		t.Fatalf("progress moved to %d past a record that failed", next)
	}
	failing.Unlock()
	waitApplied(t, tr, map[int32]int64{0: 3})
	got := p.got()
	if got[len(got)-2] != "two" || got[len(got)-1] != "three" {
		t.Fatalf("applied %v", got)
	}
}

// A poison record and an unknown event are logged, counted and skipped;
// progress moves past them and the records after them apply.
func TestPoisonAndUnknownAreCountedAndSkipped(t *testing.T) {
	log := sourcetest.NewMemory()
	bad := message(t, "bad")
	bad.Payload = []byte(`{"messageId":"x","conversation":"d:b:a"}`)
	log.Append(0, message(t, "one"), bad, runner.RawRecord{Name: "FromTheFuture.v9", Payload: []byte(`{}`)}, message(t, "two"))
	p := &recorder{}
	tr := progress.NewMemory()
	c := &counts{}
	r := runner.New(runner.Config{Logger: quiet(), Observer: c},
		runner.Reader{Name: "test", Source: log.Range([]int32{0}, nil, nil), Specs: []runner.Spec{{Name: "recorder", Projection: p, Tracker: tr}}})
	run(t, r)
	waitApplied(t, tr, map[int32]int64{0: 4})
	if got := p.got(); len(got) != 2 || got[0] != "one" || got[1] != "two" {
		t.Fatalf("applied %v, want one and two", got)
	}
	if c.get("recorder/poison") != 1 || c.get("recorder/unknown_event") != 1 {
		t.Fatalf("skipped counts %v", c.n)
	}
}

// One read feeds several projections; after a failure of the second, the
// first does not apply the batch again.
func TestSharedReaderAppliesEachProjectionOnce(t *testing.T) {
	log := sourcetest.NewMemory()
	log.MaxBatch = 10
	log.Append(0, message(t, "one"), message(t, "two"))
	first, second := &recorder{}, &recorder{}
	failed := false
	second.fail = func(projections.Record) error {
		if !failed {
			failed = true
			return errors.New("once")
		}
		return nil
	}
	t1, t2 := progress.NewMemory(), progress.NewMemory()
	r := runner.New(runner.Config{Logger: quiet(), MinBackoff: time.Millisecond},
		runner.Reader{Name: "shared", Source: log.Range([]int32{0}, nil, nil), Specs: []runner.Spec{
			{Name: "first", Projection: first, Tracker: t1}, {Name: "second", Projection: second, Tracker: t2}}})
	run(t, r)
	waitApplied(t, t2, map[int32]int64{0: 2})
	if got := first.got(); len(got) != 2 {
		t.Fatalf("the first projection applied %v", got)
	}
	if got := second.got(); len(got) != 2 {
		t.Fatalf("the second projection applied %v", got)
	}
}

type batcher struct {
	recorder
	batches [][]projections.Record
}

func (b *batcher) ApplyBatch(_ context.Context, recs []projections.Record) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batches = append(b.batches, recs)
	return nil
}

// A Batcher gets a partition's waiting records in one call; WaitRebuilt
// and Lag see its progress.
func TestBatcherWaitRebuiltAndLag(t *testing.T) {
	log := sourcetest.NewMemory()
	log.MaxBatch = 100
	for i := 0; i < 5; i++ {
		log.Append(1, message(t, "m"))
	}
	b := &batcher{}
	tr := progress.NewMemory()
	r := runner.New(runner.Config{Logger: quiet()},
		runner.Reader{Name: "b", Topic: "t", Source: log.Range([]int32{1}, nil, nil), Specs: []runner.Spec{{Name: "batcher", Projection: b, Tracker: tr, Rebuild: true}}})
	if lag := r.Lag("t", map[int32]int64{1: 5}); len(lag) != 1 || lag[0].Records != 5 {
		t.Fatalf("lag before running: %+v", lag)
	}
	run(t, r)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := r.WaitRebuilt(ctx, map[int32]int64{1: 5}); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	n := len(b.batches)
	b.mu.Unlock()
	if n != 1 {
		t.Errorf("%d batches, want one", n)
	}
	if lag := r.Lag("t", map[int32]int64{1: 5}); lag[0].Records != 0 {
		t.Errorf("lag after: %+v", lag)
	}
	if lag := r.Lag("other", map[int32]int64{1: 5}); len(lag) != 0 {
		t.Errorf("lag of another topic: %+v", lag)
	}
}
