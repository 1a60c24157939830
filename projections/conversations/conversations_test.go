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
	open := func(*testing.T) conversations.Index { return conversations.NewMemory() }
	conversationstest.Run(t, open)
	conversationstest.RunReads(t, open)
}

func TestPebbleContract(t *testing.T) {
	open := func(t *testing.T) conversations.Index {
		return conversations.NewPebble(pebbletest.Open(t), conversations.Name)
	}
	conversationstest.Run(t, open)
	conversationstest.RunReads(t, open)
}

// With its filter of held states loaded, the index answers a new
// conversation's state from memory: the contract holds all the same.
func TestPebbleContractFiltered(t *testing.T) {
	open := func(t *testing.T) conversations.Index {
		p := conversations.NewPebble(pebbletest.Open(t), conversations.Name)
		if err := p.LoadFilter(context.Background()); err != nil {
			t.Fatal(err)
		}
		return p
	}
	conversationstest.Run(t, open)
	conversationstest.RunReads(t, open)
}

func TestPostgresContract(t *testing.T) {
	pool := postgrestest.Open(t)
	open := func(t *testing.T) conversations.Index {
		if _, err := pool.Exec(context.Background(), `TRUNCATE conversations, account_conversations, conversation_reads, conversation_messages`); err != nil {
			t.Fatal(err)
		}
		return conversations.NewPostgres(pool, conversations.Name)
	}
	conversationstest.Run(t, open)
	conversationstest.RunReads(t, open)
}
