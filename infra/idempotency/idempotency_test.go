package idempotency_test

import (
	"testing"

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
