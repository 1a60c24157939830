package postgres_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/infra/postgres"
	"github.com/parley-chat/parley/infra/postgres/postgrestest"
)

func TestConfigValidate(t *testing.T) {
	const dsn = "postgres://u@127.0.0.1:5432/db"
	tests := []struct {
		name string
		cfg  postgres.Config
		want []string // substrings of the error; none for valid
	}{
		{"valid", postgres.Config{DSN: dsn, Schema: "parley_2", MaxConns: 4}, nil},
		{"key=value DSN", postgres.Config{DSN: "host=127.0.0.1 dbname=x", Schema: "_p"}, nil},
		{"no DSN", postgres.Config{Schema: "parley"}, []string{"DSN is required"}},
		{"bad DSN", postgres.Config{DSN: "postgres://u@127.0.0.1:notaport/db", Schema: "parley"}, []string{"cannot parse DSN"}},
		{"empty schema", postgres.Config{DSN: dsn}, []string{"schema"}},
		{"schema needing quotes", postgres.Config{DSN: dsn, Schema: "Parley"}, []string{"schema"}},
		{"schema injection", postgres.Config{DSN: dsn, Schema: "x; drop table y"}, []string{"schema"}},
		{"schema too long", postgres.Config{DSN: dsn, Schema: strings.Repeat("s", 64)}, []string{"schema"}},
		{"negative MaxConns", postgres.Config{DSN: dsn, Schema: "parley", MaxConns: -1}, []string{"MaxConns"}},
		{"every error at once", postgres.Config{Schema: "A", MaxConns: -1}, []string{"DSN", "schema", "MaxConns"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want errors about %v", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestOpenRejectsInvalidConfig(t *testing.T) {
	if _, err := postgres.Open(context.Background(), postgres.Config{}); err == nil {
		t.Fatal("Open with no DSN succeeded")
	}
}

func open(t *testing.T, cfg postgres.Config) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := postgres.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func appliedVersions(t *testing.T, pool *pgxpool.Pool) []int32 {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func wantVersions(t *testing.T) []int32 {
	t.Helper()
	vs, err := postgres.MigrationVersions()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func TestOpenMigratesItsSchema(t *testing.T) {
	cfg := postgrestest.Config(t)
	pool := open(t, cfg)
	ctx := context.Background()
	var current string
	if err := pool.QueryRow(ctx, "SELECT current_schema()").Scan(&current); err != nil {
		t.Fatal(err)
	}
	if current != cfg.Schema {
		t.Errorf("current_schema = %q, want %q", current, cfg.Schema)
	}
	if got, want := appliedVersions(t, pool), wantVersions(t); !slices.Equal(got, want) {
		t.Errorf("applied versions = %v, want %v", got, want)
	}
	for _, table := range []string{"direct_messages", "group_messages", "client_msg_ids", "projection_progress"} {
		var n int
		err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = $2", cfg.Schema, table).Scan(&n)
		if err != nil || n != 1 {
			t.Errorf("table %s.%s: count %d, err %v", cfg.Schema, table, n, err)
		}
	}
}

func TestOpenIsIdempotent(t *testing.T) {
	cfg := postgrestest.Config(t)
	ctx := context.Background()
	first := open(t, cfg)
	if _, err := first.Exec(ctx, "INSERT INTO projection_progress (projection, partition, next_offset) VALUES ('p', 0, 7)"); err != nil {
		t.Fatal(err)
	}
	first.Close()
	again := open(t, cfg)
	if got, want := appliedVersions(t, again), wantVersions(t); !slices.Equal(got, want) {
		t.Errorf("applied versions after a second Open = %v, want %v", got, want)
	}
	var next int64
	if err := again.QueryRow(ctx, "SELECT next_offset FROM projection_progress WHERE projection = 'p'").Scan(&next); err != nil || next != 7 {
		t.Errorf("row written before the second Open: %d, %v; want 7", next, err)
	}
}

// Processes starting together take turns on the advisory lock: every one
// opens, and each migration is applied once.
func TestOpenConcurrently(t *testing.T) {
	cfg := postgrestest.Config(t)
	const processes = 6
	var wg sync.WaitGroup
	pools := make([]*pgxpool.Pool, processes)
	errs := make([]error, processes)
	start := make(chan struct{})
	for i := range processes {
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			pools[i], errs[i] = postgres.Open(ctx, cfg)
		})
	}
	close(start)
	wg.Wait()
	for i, p := range pools {
		if p != nil {
			t.Cleanup(p.Close)
		}
		if errs[i] != nil {
			t.Errorf("Open #%d: %v", i, errs[i])
		}
	}
	if errors.Join(errs...) != nil {
		return
	}
	if got, want := appliedVersions(t, pools[0]), wantVersions(t); !slices.Equal(got, want) {
		t.Errorf("applied versions = %v, want %v", got, want)
	}
}

// Each schema is its own world: the same tables, different rows.
func TestSchemasAreApart(t *testing.T) {
	ctx := context.Background()
	a, b := postgrestest.Open(t), postgrestest.Open(t)
	if _, err := a.Exec(ctx, "INSERT INTO projection_progress (projection, partition, next_offset) VALUES ('p', 0, 1)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.QueryRow(ctx, "SELECT count(*) FROM projection_progress").Scan(&n); err != nil || n != 0 {
		t.Errorf("the other schema sees %d rows (err %v), want 0", n, err)
	}
}

func TestOpenHonoursCancellation(t *testing.T) {
	cfg := postgrestest.Config(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if pool, err := postgres.Open(ctx, cfg); err == nil {
		pool.Close()
		t.Fatal("Open with a cancelled context succeeded")
	}
}

// The pool's size is Config.MaxConns, else the DSN's pool_max_conns, else
// DefaultMaxConns — not pgxpool's default of 4 on a small machine.
func TestPoolSize(t *testing.T) {
	base := postgrestest.Config(t)
	tests := []struct {
		name     string
		dsn      string
		maxConns int32
		want     int32
	}{
		{"default", base.DSN, 0, postgres.DefaultMaxConns},
		{"from the DSN", withParam(base.DSN, "pool_max_conns=3"), 0, 3},
		{"from the config", withParam(base.DSN, "pool_max_conns=3"), 5, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool := open(t, postgres.Config{DSN: tc.dsn, Schema: base.Schema, MaxConns: tc.maxConns})
			if got := pool.Config().MaxConns; got != tc.want {
				t.Errorf("MaxConns = %d, want %d", got, tc.want)
			}
		})
	}
}

// Every connection plans statements for their parameters, unless the DSN
// says otherwise.
func TestPlanCacheMode(t *testing.T) {
	base := postgrestest.Config(t)
	options := "options='-c plan_cache_mode=auto'" // key=value pairs
	if strings.Contains(base.DSN, "://") {
		options = "options=-c%20plan_cache_mode%3Dauto"
	}
	tests := []struct{ name, dsn, want string }{
		{"default", base.DSN, "force_custom_plan"},
		{"from the DSN", withParam(base.DSN, "plan_cache_mode=auto"), "auto"},
		{"from the DSN's options", withParam(base.DSN, options), "auto"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool := open(t, postgres.Config{DSN: tc.dsn, Schema: base.Schema})
			var got string
			if err := pool.QueryRow(context.Background(), "SHOW plan_cache_mode").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("plan_cache_mode = %q, want %q", got, tc.want)
			}
		})
	}
}

// withParam is dsn, a URL or key=value pairs, with the setting kv added.
func withParam(dsn, kv string) string {
	switch {
	case strings.Contains(dsn, "?"):
		return dsn + "&" + kv
	case strings.Contains(dsn, "://"):
		return dsn + "?" + kv
	}
	return dsn + " " + kv
}
