package notify_test

import (
	"context"
	"testing"

	"github.com/parley-chat/parley/infra/pebble/pebbletest"
	"github.com/parley-chat/parley/infra/postgres/postgrestest"
	"github.com/parley-chat/parley/projections/notify"
	"github.com/parley-chat/parley/projections/notify/notifytest"
)

func TestMemoryMutesContract(t *testing.T) {
	notifytest.Run(t, func(*testing.T) notify.Mutes { return notify.NewMemoryMutes() })
}

func TestPebbleMutesContract(t *testing.T) {
	notifytest.Run(t, func(t *testing.T) notify.Mutes { return notify.NewPebbleMutes(pebbletest.Open(t)) })
}

func TestPostgresMutesContract(t *testing.T) {
	pool := postgrestest.Open(t)
	notifytest.Run(t, func(t *testing.T) notify.Mutes {
		if _, err := pool.Exec(context.Background(), `TRUNCATE conversation_mutes`); err != nil {
			t.Fatal(err)
		}
		return notify.NewPostgresMutes(pool)
	})
}
