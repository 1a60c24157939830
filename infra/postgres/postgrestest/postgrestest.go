// Package postgrestest gives integration tests a PostgreSQL database of
// their own: a freshly created and migrated schema, dropped when the test
// ends, so tests never see each other's rows.
//
// The server is PARLEY_TEST_POSTGRES_DSN, by default the local test
// database. When it cannot be reached the test is skipped with the reason
// printed — except when CI=true, where a missing database is a failure, so
// that CI cannot go green by skipping.
package postgrestest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/infra/postgres"
)

const (
	// EnvDSN names the environment variable that points the tests at a server.
	EnvDSN = "PARLEY_TEST_POSTGRES_DSN"
	// DefaultDSN is the server used when EnvDSN is unset.
	DefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// reach checks the server once per process: when it is down, every test
// would otherwise wait for its own connect timeout.
var reach = sync.OnceValues(func() (string, error) {
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		dsn = DefaultDSN
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return dsn, err
	}
	defer conn.Close(ctx)
	return dsn, conn.Ping(ctx)
})

// DSN returns the test server's connection string, or ends the test when
// the server is unreachable: Skip normally, Fatal when CI is "true".
func DSN(t testing.TB) string {
	t.Helper()
	dsn, err := reach()
	if err != nil {
		where := describe(dsn)
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL at %s is unreachable and CI=true requires it: %v", where, err)
		}
		t.Skipf("skipping: PostgreSQL at %s is unreachable (set %s to another server; with CI=true this fails): %v", where, EnvDSN, err)
	}
	return dsn
}

// Config returns a configuration for a new schema with a unique name,
// created by the first postgres.Open with it and dropped when the test
// ends. Tests that open the same schema more than once start here.
func Config(t testing.TB) postgres.Config {
	t.Helper()
	dsn := DSN(t)
	schema := schemaName(t)
	t.Cleanup(func() { dropSchema(t, dsn, schema) })
	return postgres.Config{DSN: dsn, Schema: schema, MaxConns: 8}
}

// Open returns a pool on a new, migrated schema of the test's own. The pool
// is closed and the schema dropped when the test ends.
func Open(t testing.TB) *pgxpool.Pool {
	t.Helper()
	cfg := Config(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := postgres.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("cannot open schema %s: %v", cfg.Schema, err)
	}
	t.Cleanup(pool.Close) // runs before the schema is dropped
	return pool
}

// schemaName is the test's name, cut and cleaned, with a random suffix:
// readable when a run leaves one behind, unique across parallel runs.
func schemaName(t testing.TB) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(t.Name()) {
		if b.Len() >= 40 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		t.Fatal(err)
	}
	return b.String() + "_" + hex.EncodeToString(suffix[:])
}

func dropSchema(t testing.TB, dsn, schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Errorf("cannot drop schema %s: %v", schema, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		t.Errorf("cannot drop schema %s: %v", schema, err)
	}
}

// describe names the server without its password.
func describe(dsn string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return fmt.Sprintf("(unparsable %s: %v)", EnvDSN, err)
	}
	return fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
}
