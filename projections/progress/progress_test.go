package progress_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/infra/pebble/pebbletest"
	"github.com/parley-chat/parley/infra/postgres"
	"github.com/parley-chat/parley/infra/postgres/postgrestest"
	"github.com/parley-chat/parley/infra/redis/redistest"
	"github.com/parley-chat/parley/projections/progress"
	"github.com/parley-chat/parley/projections/progress/progresstest"
)

func TestMemoryContract(t *testing.T) {
	progresstest.Run(t, func(*testing.T, string) progress.Backend { return nil })
}

func TestPebbleSavedContract(t *testing.T) {
	db := pebbletest.Open(t)
	progresstest.Run(t, func(_ *testing.T, name string) progress.Backend { return progress.NewPebbleSaved(db, name) })
}

func TestPostgresContract(t *testing.T) {
	cfg := postgrestest.Config(t)
	pool, err := postgres.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	progresstest.Run(t, func(_ *testing.T, name string) progress.Backend { return progress.NewPostgres(pool, name) })
}

func TestRedisContract(t *testing.T) {
	client, prefix := redistest.Client(t)
	progresstest.Run(t, func(_ *testing.T, name string) progress.Backend {
		return progress.NewRedis(client, prefix+"progress:"+name)
	})
}

// With Rewrite, progress lost with Redis's data (a FLUSHALL) comes back
// from the process that made it.
func TestRedisRewriteRestoresALostHash(t *testing.T) {
	client, prefix := redistest.Client(t)
	key := prefix + "progress:lost"
	tr, err := progress.New(t.Context(), progress.NewRedis(client, key), progress.Config{Name: "lost", Rewrite: true, RefreshInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.Advance(0, 6)
	eventually(t, "the first write", func() bool { return client.HGet(t.Context(), key, "0").Val() == "7" })
	client.Del(t.Context(), key)
	eventually(t, "the rewrite", func() bool { return client.HGet(t.Context(), key, "0").Val() == "7" })
}

// A partition another process has taken further (a rebalance gave it
// away) is not rewritten from this process's old progress — not even
// after the hash is lost — until this process advances it again.
func TestRewriteLeavesAPartitionTakenFurther(t *testing.T) {
	client, prefix := redistest.Client(t)
	ctx := t.Context()
	key := prefix + "progress:passed"
	tr, err := progress.New(ctx, progress.NewRedis(client, key), progress.Config{Name: "passed", Rewrite: true, RefreshInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.Advance(0, 9)
	tr.Advance(1, 9)
	eventually(t, "the first writes", func() bool {
		return client.HGet(ctx, key, "0").Val() == "10" && client.HGet(ctx, key, "1").Val() == "10"
	})
	client.HSet(ctx, key, "0", 20) // another process took partition 0 further
	eventually(t, "the tracker to see it", func() bool { return tr.Next(0) == 20 })
	time.Sleep(60 * time.Millisecond) // a refresh or two after it saw it
	client.Del(ctx, key)
	eventually(t, "partition 1's rewrite", func() bool { return client.HGet(ctx, key, "1").Val() == "10" })
	time.Sleep(100 * time.Millisecond) // several more refreshes
	if v, err := client.HGet(ctx, key, "0").Result(); err == nil {
		t.Fatalf("partition 0 was rewritten to %s from this process's old progress", v)
	}
	tr.Advance(0, 24)
	eventually(t, "partition 0 written once advanced here", func() bool { return client.HGet(ctx, key, "0").Val() == "25" })
}

// A hash that went backwards (a flush, or a failover that took progress
// writes too) is not written over until the read model has repaired
// what it may have lost from there on.
func TestRedisNoticesALoss(t *testing.T) {
	client, prefix := redistest.Client(t)
	ctx := t.Context()
	key := prefix + "progress:loss"
	var losses []map[int32]int64
	var fail error
	b := progress.NewRedis(client, key).OnLoss(func(_ context.Context, lost map[int32]int64) error {
		losses = append(losses, lost)
		return fail
	})
	stored := func() string { return client.HGet(ctx, key, "0").Val() }
	if _, err := b.Save(ctx, map[int32]int64{0: 10, 1: 3}); err != nil {
		t.Fatal(err)
	}
	client.HSet(ctx, key, "0", 4) // the loss: partition 0 back to 4
	fail = errors.New("repair failed")
	if _, err := b.Save(ctx, map[int32]int64{0: 12, 1: 5}); err == nil {
		t.Fatal("a Save whose repair failed succeeded")
	}
	if stored() != "4" || len(losses) != 1 || !maps.Equal(losses[0], map[int32]int64{0: 4}) {
		t.Fatalf("after a failed repair: stored %s, losses %v", stored(), losses)
	}
	// A read of the lowered hash does not make it look right.
	if _, err := b.Load(ctx); err != nil {
		t.Fatal(err)
	}
	fail = nil
	got, err := b.Save(ctx, map[int32]int64{0: 12, 1: 5})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != 12 || got[1] != 5 || stored() != "12" || len(losses) != 2 || !maps.Equal(losses[1], map[int32]int64{0: 4}) {
		t.Fatalf("after the repair: got %v, stored %s, losses %v", got, stored(), losses)
	}
	// Another process's greater progress is no loss, nor is a Save that
	// would not move the hash.
	client.HSet(ctx, key, "0", 20)
	if got, err := b.Save(ctx, map[int32]int64{0: 13}); err != nil || got[0] != 20 || len(losses) != 2 {
		t.Fatalf("behind another process: got %v, %v, losses %v", got, err, losses)
	}
	// A flush is a loss too.
	client.Del(ctx, key)
	if _, err := b.Save(ctx, map[int32]int64{0: 21}); err != nil || len(losses) != 3 || !maps.Equal(losses[2], map[int32]int64{0: 0}) || stored() != "21" {
		t.Fatalf("after a flush: %v, losses %v, stored %s", err, losses, stored())
	}
}

// Progress last moved forward on another Redis server (the master
// before a failover, or before a restart) is suspect from what the hash
// holds, also for a process that starts after the switch: the data
// written on that server after its last progress write that reached this
// one may be gone.
func TestRedisNoticesAnotherServer(t *testing.T) {
	client, prefix := redistest.Client(t)
	ctx := t.Context()
	key := prefix + "progress:server"
	var losses []map[int32]int64
	b := progress.NewRedis(client, key).OnLoss(func(_ context.Context, lost map[int32]int64) error {
		losses = append(losses, lost)
		return nil
	})
	if _, err := b.Save(ctx, map[int32]int64{0: 10, 1: 10}); err != nil {
		t.Fatal(err)
	}
	if run := client.HGet(ctx, key, "0:run").Val(); len(run) != 40 {
		t.Fatalf("the server's run id is not stored: %q", run)
	}
	// As the hash looks on a promoted replica: both partitions last moved
	// on the old master.
	client.HSet(ctx, key, "0:run", strings.Repeat("a", 40), "1:run", strings.Repeat("a", 40))
	fresh := progress.NewRedis(client, key).OnLoss(func(_ context.Context, lost map[int32]int64) error {
		losses = append(losses, lost)
		return nil
	})
	// A process with nothing past the hash wrote nothing it may lose.
	if _, err := fresh.Save(ctx, map[int32]int64{1: 10}); err != nil || len(losses) != 0 {
		t.Fatalf("a Save at the hash: %v, losses %v", err, losses)
	}
	if _, err := fresh.Save(ctx, map[int32]int64{0: 11, 1: 12}); err != nil {
		t.Fatal(err)
	}
	if len(losses) != 1 || !maps.Equal(losses[0], map[int32]int64{0: 10, 1: 10}) {
		t.Fatalf("losses %v, want both partitions from 10", losses)
	}
	if got := client.HMGet(ctx, key, "0", "1").Val(); got[0] != "11" || got[1] != "12" {
		t.Fatalf("stored %v after the repair", got)
	}
	if _, err := fresh.Save(ctx, map[int32]int64{0: 13}); err != nil || len(losses) != 1 {
		t.Fatalf("a Save after the repair: %v, losses %v", err, losses)
	}
}

// While the read model repairs — and until progress is written after a
// repair that failed — the tracker's view of the partition stays at the
// loss, so that this process's readers do not trust what may be gone. A
// hash that goes back again during the repair is a loss again.
func TestTrackerHoldsALossUntilRepaired(t *testing.T) {
	client, prefix := redistest.Client(t)
	ctx := t.Context()
	key := prefix + "progress:hold"
	var tr *progress.Tracker
	type call struct {
		view int64
		lost map[int32]int64
	}
	calls := make(chan call, 1)
	results := make(chan func() error, 1)
	b := progress.NewRedis(client, key).OnLoss(func(_ context.Context, lost map[int32]int64) error {
		calls <- call{tr.Next(0), lost}
		select {
		case f := <-results:
			return f()
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	tr, err := progress.New(ctx, b, progress.Config{Name: "hold", RefreshInterval: 50 * time.Millisecond, Rewrite: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.Advance(0, 9)
	eventually(t, "the first write", func() bool { return client.HGet(ctx, key, "0").Val() == "10" })
	client.HSet(ctx, key, "0", 4)
	tr.Advance(0, 10)
	expect := func(what string, view int64, from int64) {
		t.Helper()
		select {
		case c := <-calls:
			if c.view != view || !maps.Equal(c.lost, map[int32]int64{0: from}) {
				t.Fatalf("%s: view %d, lost %v; want view %d, lost from %d", what, c.view, c.lost, view, from)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no repair within 5s", what)
		}
	}
	expect("the repair", 4, 4)
	results <- func() error { return errors.New("repair failed") }
	expect("the repair after a failed one", 4, 4)
	if tr.Next(0) != 4 {
		t.Fatalf("the view after a failed repair is %d, want 4", tr.Next(0))
	}
	results <- func() error { return client.HSet(ctx, key, "0", 2).Err() } // back again meanwhile
	expect("the repair after the hash went back again", 2, 2)
	results <- func() error { return nil }
	eventually(t, "the write after the repair", func() bool { return client.HGet(ctx, key, "0").Val() == "11" })
	eventually(t, "the view to be let go", func() bool { return tr.Next(0) == 11 })
}

// A gateway that reads a lost hash no longer vouches for the data that
// went with it: its view drops to what is stored.
func TestStoredViewFollowsTheBackend(t *testing.T) {
	client, prefix := redistest.Client(t)
	key := prefix + "progress:view"
	projector, err := progress.New(t.Context(), progress.NewRedis(client, key), progress.Config{Name: "view"})
	if err != nil {
		t.Fatal(err)
	}
	projector.Advance(0, 6)
	if err := projector.Close(); err != nil {
		t.Fatal(err)
	}
	gateway, err := progress.New(t.Context(), progress.NewRedis(client, key), progress.Config{Name: "view", RefreshInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer gateway.Close()
	if gateway.Next(0) != 7 {
		t.Fatalf("Next = %d, want 7", gateway.Next(0))
	}
	client.Del(t.Context(), key)
	eventually(t, "the gateway's view to drop", func() bool { return gateway.Next(0) == 0 })
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A replayable batch writes its partition's progress only MarkEvery after
// the last write; SaveMarks then stores what the tracker holds.
func TestPebbleMarksOfReplayableBatches(t *testing.T) {
	defer func(every time.Duration) { progress.MarkEvery = every }(progress.MarkEvery)
	db := pebbletest.Open(t)
	m := progress.NewPebbleMarks(db, "model")
	stored := func() map[int32]int64 {
		got, err := progress.NewPebble(db, "model").Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	commit := func(next int64) {
		b := db.NewBatch()
		defer b.Close()
		if err := b.Set([]byte("data"), []byte{byte(next)}, nil); err != nil {
			t.Fatal(err)
		}
		if err := m.CommitReplayable(b, 3, next); err != nil {
			t.Fatal(err)
		}
	}
	progress.MarkEvery = time.Hour
	commit(10) // the partition's first: written
	commit(11) // within MarkEvery: the data only
	if got := stored()[3]; got != 10 {
		t.Fatalf("stored progress %d, want 10", got)
	}
	if v, closer, err := db.Get([]byte("data")); err != nil || v[0] != 11 {
		t.Fatalf("data %v, %v: the batch was not committed", v, err)
	} else {
		closer.Close()
	}
	progress.MarkEvery = 0
	commit(12)
	if got := stored()[3]; got != 12 {
		t.Fatalf("stored progress %d after MarkEvery, want 12", got)
	}

	tr := progress.NewMemory()
	tr.Advance(3, 19)
	tr.Advance(5, 6)
	if err := progress.SaveMarks(db, "model", tr, 8); err != nil {
		t.Fatal(err)
	}
	if got := stored(); got[3] != 20 || got[5] != 7 || len(got) != 2 {
		t.Fatalf("saved progress %v, want partition 3 at 20 and 5 at 7", got)
	}
}
