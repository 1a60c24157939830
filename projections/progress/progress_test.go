package progress_test

import (
	"context"
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
