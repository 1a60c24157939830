// Package pebbletest gives tests an embedded store of their own, in memory.
package pebbletest

import (
	"io"
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	parleypebble "github.com/parley-chat/parley/infra/pebble"
)

// Open returns an empty store in memory, closed when the test ends.
func Open(t testing.TB) *pebble.DB {
	t.Helper()
	db, err := parleypebble.Open(parleypebble.Config{InMemory: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}
