package conversations_test

import (
	"context"
	"testing"

	"github.com/parley-chat/parley/infra/pebble/pebbletest"
	"github.com/parley-chat/parley/infra/postgres/postgrestest"
	"github.com/parley-chat/parley/projections/conversations"
	"github.com/parley-chat/parley/projections/conversations/conversationstest"
)

func TestMemoryContract(t *testing.T) {
	conversationstest.Run(t, func(*testing.T) conversations.Index { return conversations.NewMemory() })
}

func TestPebbleContract(t *testing.T) {
	conversationstest.Run(t, func(t *testing.T) conversations.Index {
		return conversations.NewPebble(pebbletest.Open(t), conversations.Name)
	})
}

func TestPostgresContract(t *testing.T) {
	pool := postgrestest.Open(t)
	conversationstest.Run(t, func(t *testing.T) conversations.Index {
		if _, err := pool.Exec(context.Background(), `TRUNCATE conversations, account_conversations`); err != nil {
			t.Fatal(err)
		}
		return conversations.NewPostgres(pool, conversations.Name)
	})
}
