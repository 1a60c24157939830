package idempotency_test

import (
	"testing"
	"time"

	"github.com/parley-chat/parley/infra/idempotency"
	"github.com/parley-chat/parley/infra/idempotency/idempotencytest"
	"github.com/parley-chat/parley/infra/redis/redistest"
)

func TestMemoryContract(t *testing.T) {
	idempotencytest.Run(t, func(t *testing.T) idempotency.Reservations { return idempotency.NewMemory(nil) })
}

func TestRedisContract(t *testing.T) {
	idempotencytest.Run(t, func(t *testing.T) idempotency.Reservations {
		rdb, prefix := redistest.Client(t)
		return idempotency.NewRedis(rdb, prefix)
	})
}

// A server that lost its scripts (a restart, SCRIPT FLUSH) still forgets:
// the script is loaded again.
func TestRedisForgetAfterScriptFlush(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	r := idempotency.NewRedis(rdb, prefix)
	ctx := t.Context()
	k := idempotency.Key{Account: "alice", ClientMsgID: "flushed"}
	e, err := r.Reserve(ctx, k, 0, time.Minute, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Complete(ctx, k, e.Token, idempotency.Ack{MsgID: 1}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Forget(ctx, k); err != nil {
		t.Fatalf("Forget after SCRIPT FLUSH: %v", err)
	}
	if got, err := r.Reserve(ctx, k, 0, time.Minute, time.Hour); err != nil || got.State != idempotency.Reserved {
		t.Fatalf("after forgetting: %+v, %v; want a fresh reservation", got, err)
	}
}
