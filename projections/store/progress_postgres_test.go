package store_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/infra/postgres"
	"github.com/parley-chat/parley/infra/postgres/postgrestest"
	"github.com/parley-chat/parley/projections/store"
)

// sharedDB opens a schema twice, as a projector process and a gateway
// process would: two pools on the same tables.
func sharedDB(t *testing.T) (projector, gateway *pgxpool.Pool) {
	t.Helper()
	cfg := postgrestest.Config(t)
	ctx := context.Background()
	open := func() *pgxpool.Pool {
		pool, err := postgres.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		return pool
	}
	return open(), open()
}

func newProgress(t *testing.T, pool *pgxpool.Pool, cfg store.PostgresProgressConfig) *store.PostgresProgress {
	t.Helper()
	if cfg.Projection == "" {
		cfg.Projection = store.Name
	}
	p, err := store.NewPostgresProgress(context.Background(), pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() }) // before the pool closes
	return p
}

// waitAsync runs WaitForAll in a goroutine and returns its result channel.
func waitAsync(ctx context.Context, p *store.PostgresProgress, ends map[int32]int64) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- p.WaitForAll(ctx, ends) }()
	return ch
}

// notDone fails if ch delivers within a grace period of several polls. It
// cannot prove that a waiter would never return, only that it has not yet.
func notDone(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned early: %v", what, err)
	case <-time.After(50 * time.Millisecond):
	}
}

func done(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

func storedNext(t *testing.T, pool *pgxpool.Pool, projection string, part int32) int64 {
	t.Helper()
	var next int64
	err := pool.QueryRow(context.Background(),
		"SELECT next_offset FROM projection_progress WHERE projection = $1 AND partition = $2", projection, part).Scan(&next)
	if err != nil {
		t.Fatalf("reading progress of %s/%d: %v", projection, part, err)
	}
	return next
}

func TestPostgresProgressConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  store.PostgresProgressConfig
		ok   bool
	}{
		{"defaults", store.PostgresProgressConfig{Projection: "p"}, true},
		{"no projection", store.PostgresProgressConfig{}, false},
		{"negative interval", store.PostgresProgressConfig{Projection: "p", PollInterval: -time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

func TestPostgresProgressAdvanceAndNext(t *testing.T) {
	tests := []struct {
		name     string
		advances [][2]int64 // partition, offset
		want     map[int32]int64
	}{
		{"nothing applied", nil, map[int32]int64{0: 0, 7: 0}},
		{"in order", [][2]int64{{0, 0}, {0, 1}, {0, 2}}, map[int32]int64{0: 3}},
		{"a gap is fine", [][2]int64{{0, 0}, {0, 9}}, map[int32]int64{0: 10}},
		{"never moves back", [][2]int64{{0, 5}, {0, 2}, {0, 5}}, map[int32]int64{0: 6}},
		{"partitions are independent", [][2]int64{{0, 3}, {1, 10}, {2, 0}}, map[int32]int64{0: 4, 1: 11, 2: 1, 3: 0}},
	}
	pool := postgrestest.Open(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProgress(t, pool, store.PostgresProgressConfig{Projection: t.Name()})
			for _, a := range tt.advances {
				p.Advance(int32(a[0]), a[1])
			}
			for part, want := range tt.want {
				if got := p.Next(part); got != want {
					t.Errorf("Next(%d) = %d, want %d", part, got, want)
				}
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			for part, want := range tt.want {
				if want == 0 {
					continue
				}
				if got := storedNext(t, pool, t.Name(), part); got != want {
					t.Errorf("stored next offset of %d = %d, want %d", part, got, want)
				}
			}
		})
	}
}

// A gateway that does not project learns from the table that the store
// holds what the projector applied.
func TestPostgresProgressWaitAcrossProcesses(t *testing.T) {
	projDB, gwDB := sharedDB(t)
	projector := newProgress(t, projDB, store.PostgresProgressConfig{})
	gateway := newProgress(t, gwDB, store.PostgresProgressConfig{})
	ctx := context.Background()

	w := waitAsync(ctx, gateway, map[int32]int64{0: 5})
	notDone(t, w, "WaitFor before anything is applied")
	projector.Advance(0, 3)
	notDone(t, w, "WaitFor with offset 3 of 5 applied")
	projector.Advance(0, 4)
	if err := done(t, w, "WaitFor after offset 4"); err != nil {
		t.Fatalf("WaitFor = %v", err)
	}
	if got := gateway.Next(0); got != 5 {
		t.Errorf("gateway Next(0) = %d after waiting, want 5", got)
	}

	t.Run("WaitForAll", func(t *testing.T) {
		w := waitAsync(ctx, gateway, map[int32]int64{1: 3, 2: 5})
		projector.Advance(1, 2)
		notDone(t, w, "WaitForAll with partition 2 behind")
		projector.Advance(2, 9)
		if err := done(t, w, "WaitForAll"); err != nil {
			t.Fatalf("WaitForAll = %v", err)
		}
	})
	t.Run("many waiters", func(t *testing.T) {
		var ws []<-chan error
		for range 50 {
			ws = append(ws, waitAsync(ctx, gateway, map[int32]int64{3: 1}))
		}
		projector.Advance(3, 0)
		for _, w := range ws {
			if err := done(t, w, "WaitFor"); err != nil {
				t.Fatalf("WaitFor = %v", err)
			}
		}
	})
	t.Run("a fresh process reads the table at start", func(t *testing.T) {
		later := newProgress(t, gwDB, store.PostgresProgressConfig{})
		if got := later.Next(2); got != 10 {
			t.Errorf("Next(2) = %d, want 10", got)
		}
	})
	t.Run("projections are apart", func(t *testing.T) {
		other := newProgress(t, gwDB, store.PostgresProgressConfig{Projection: "other"})
		if got := other.Next(0); got != 0 {
			t.Errorf("other projection Next(0) = %d, want 0", got)
		}
	})
}

// The projecting process answers from memory, without a query: here the
// context is already done, so a query could not succeed.
func TestPostgresProgressLocalAnswersAtOnce(t *testing.T) {
	p := newProgress(t, postgrestest.Open(t), store.PostgresProgressConfig{FlushInterval: time.Hour})
	p.Advance(0, 9)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.WaitFor(ctx, 0, 10); err != nil {
		t.Errorf("WaitFor covered by local progress = %v, want nil", err)
	}
	if err := p.WaitFor(ctx, 0, 0); err != nil {
		t.Errorf("WaitFor(0) = %v, want nil", err)
	}
}

func TestPostgresProgressWaitGivesUp(t *testing.T) {
	p := newProgress(t, postgrestest.Open(t), store.PostgresProgressConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err := p.WaitFor(ctx, 0, 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor = %v, want it to wrap context.DeadlineExceeded", err)
	}
}

// Two projectors of one read model (say during a rebalance) never move the
// stored progress back.
func TestPostgresProgressNeverBackwards(t *testing.T) {
	a, b := sharedDB(t)
	ahead := newProgress(t, a, store.PostgresProgressConfig{})
	behind := newProgress(t, b, store.PostgresProgressConfig{})
	ahead.Advance(0, 10)
	if err := ahead.Close(); err != nil {
		t.Fatal(err)
	}
	behind.Advance(0, 3)
	behind.Advance(1, 4)
	if err := behind.Close(); err != nil {
		t.Fatal(err)
	}
	if got := storedNext(t, a, store.Name, 0); got != 11 {
		t.Errorf("stored next offset of 0 = %d, want 11", got)
	}
	if got := storedNext(t, a, store.Name, 1); got != 5 {
		t.Errorf("stored next offset of 1 = %d, want 5", got)
	}
	if got := behind.Next(0); got != 11 {
		t.Errorf("Next(0) of the lagging projector = %d, want 11 (read from the table)", got)
	}
}

// Close writes what the background writer has not yet written.
func TestPostgresProgressCloseFlushes(t *testing.T) {
	pool := postgrestest.Open(t)
	// The first advance is written at once, the second only after an hour,
	// or at Close.
	p := newProgress(t, pool, store.PostgresProgressConfig{FlushInterval: time.Hour})
	p.Advance(0, 1)
	p.Advance(0, 41)
	if err := p.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if got := storedNext(t, pool, store.Name, 0); got != 42 {
		t.Errorf("stored next offset = %d, want 42", got)
	}
}

// When the last write fails Close says so.
func TestPostgresProgressCloseReportsAFailedWrite(t *testing.T) {
	cfg := postgrestest.Config(t)
	pool, err := postgres.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := store.NewPostgresProgress(context.Background(), pool, store.PostgresProgressConfig{
		Projection: "p", FlushInterval: time.Hour, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Advance(0, 1)
	p.Advance(0, 2)
	pool.Close()
	if err := p.Close(); err == nil {
		t.Error("Close after losing the database = nil, want the write's error")
	}
}
