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
	return open(t, parleypebble.Config{InMemory: true})
}

// OpenOnDisk returns an empty store in a directory of the test's, with
// its files and fsyncs, as benchmarks of disk-bound work need; closed when
// the test ends.
func OpenOnDisk(t testing.TB) *pebble.DB {
	t.Helper()
	return open(t, parleypebble.Config{Dir: t.TempDir()})
}

func open(t testing.TB, cfg parleypebble.Config) *pebble.DB {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := parleypebble.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}
