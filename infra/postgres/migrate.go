package postgres

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// Migrations are forward-only SQL files named NNNN_what.sql, applied in
// version order, each in its own transaction, and recorded in
// schema_migrations. The history is kept forever (R5), so there are no down
// migrations: a change that must be undone is a new, later file.
//
// This small runner rather than a migration library: it has to create the
// schema and take a lock keyed by it before anything else, it works on a
// pgx connection (a library would want database/sql), and a waiting
// process blocks on the lock instead of polling for it.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

const migrationDir = "migrations"

// lockClass is the first half of the advisory lock key ("prly"); the second
// is a hash of the schema, so that migrating one schema does not wait for
// another.
const lockClass int32 = 0x70726c79

var migrationName = regexp.MustCompile(`^(\d{4})_[a-z0-9_]+\.sql$`)

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the migrations in dir, sorted by version.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("cannot read migrations: %w", err)
	}
	var ms []migration
	seen := map[int]string{}
	for _, e := range entries {
		match := migrationName.FindStringSubmatch(e.Name())
		if e.IsDir() || match == nil {
			return nil, fmt.Errorf("cannot load migrations: %q is not named NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(match[1])
		if v == 0 {
			return nil, fmt.Errorf("cannot load migrations: %q has version 0", e.Name())
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("cannot load migrations: %q and %q share version %d", other, e.Name(), v)
		}
		seen[v] = e.Name()
		body, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("cannot read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// migrate creates schema if missing and applies the migrations it has not
// recorded, holding an advisory lock so that processes starting together
// take turns. It uses a connection of its own: closing it ends the session,
// which releases the lock on every path, errors and cancellation included.
func migrate(ctx context.Context, cc *pgx.ConnConfig, schema string, ms []migration) error {
	conn, err := pgx.ConnectConfig(ctx, cc.Copy())
	if err != nil {
		return fmt.Errorf("cannot connect to postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	h := fnv.New32a()
	_, _ = h.Write([]byte(schema))
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, $2)", lockClass, int32(h.Sum32())); err != nil {
		return fmt.Errorf("cannot take the migration lock: %w", err)
	}
	setup := []string{
		"CREATE SCHEMA IF NOT EXISTS " + pgx.Identifier{schema}.Sanitize(),
		// The session began before the schema existed; name it again.
		"SET search_path TO " + pgx.Identifier{schema}.Sanitize(),
		`CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`,
	}
	for _, stmt := range setup {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("cannot prepare schema %s: %w", schema, err)
		}
	}
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("cannot read applied migrations: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("cannot read applied migrations: %w", err)
	}
	applied := map[int]bool{}
	for _, v := range versions {
		applied[int(v)] = true
	}
	// Versions recorded here but unknown to this binary come from a newer
	// release; they are left alone so that a rolling deploy can run old and
	// new processes side by side (migrations are additive).
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("cannot apply migration %s to schema %s: %w", m.name, schema, err)
		}
	}
	return nil
}
