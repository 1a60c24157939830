// Package postgres opens Parley's PostgreSQL database: a connection pool
// whose every connection works in one schema, with the schema's migrations
// applied. The read models that live in PostgreSQL (projections/store) take
// the pool it returns.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultSchema is the schema Parley's tables live in unless configured.
const DefaultSchema = "parley"

// schemaPattern keeps schema names to plain identifiers that need no
// quoting, so one name works in search_path, DDL and log lines alike.
var schemaPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidSchema reports whether name can be Config.Schema: lowercase
// letters, digits and '_', at most 63 bytes, not starting with a digit.
func ValidSchema(name string) bool { return schemaPattern.MatchString(name) }

// Config configures the database connection.
type Config struct {
	// DSN is the connection string, as a URL
	// (postgres://user@host:5432/db?sslmode=disable) or key=value pairs.
	// Pool settings in it (pool_max_conns, ...) apply unless overridden
	// below. Required.
	DSN string
	// Schema holds Parley's tables. It is created if missing and is the
	// search_path of every connection, so several deployments (or every
	// test) can share one database. Lowercase letters, digits and '_'.
	// Default "parley".
	Schema string
	// MaxConns bounds the pool. Zero keeps the DSN's pool_max_conns, or
	// DefaultMaxConns.
	MaxConns int32
}

// DefaultMaxConns is the pool's size when neither Config.MaxConns nor the
// DSN's pool_max_conns sets one. pgxpool's own default (the larger of 4
// and the number of CPUs) is too few for a process whose projections hold
// connections in transactions while every send looks its client message
// id up: on 2 cores the lookups queued behind them for hundreds of
// milliseconds at 1,000 sends/s.
const DefaultMaxConns = 16

func (c *Config) setDefaults() {
	if c.Schema == "" {
		c.Schema = DefaultSchema
	}
}

// Validate reports every invalid field at once.
func (c Config) Validate() error {
	var errs []error
	if c.DSN == "" {
		errs = append(errs, errors.New("postgres: DSN is required"))
	} else if _, err := pgxpool.ParseConfig(c.DSN); err != nil {
		errs = append(errs, fmt.Errorf("postgres: cannot parse DSN: %w", err))
	}
	if !ValidSchema(c.Schema) {
		errs = append(errs, fmt.Errorf("postgres: schema %q is not a lowercase identifier of at most 63 bytes", c.Schema))
	}
	if c.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("postgres: MaxConns is %d, want zero (default) or more", c.MaxConns))
	}
	return errors.Join(errs...)
}

// Open connects to the database, creates the schema if missing and applies
// the pending migrations (safe when several processes start at once), and
// returns a pool whose connections all use the schema. The caller closes
// the pool.
func Open(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("cannot parse postgres DSN: %w", err)
	}
	switch {
	case cfg.MaxConns > 0:
		pc.MaxConns = cfg.MaxConns
	case !dsnSetsPoolSize(cfg.DSN):
		pc.MaxConns = DefaultMaxConns
	}
	// A startup parameter rather than a SET after connecting: no extra
	// round trip, and it cannot be lost by a connection reset.
	pc.ConnConfig.RuntimeParams["search_path"] = cfg.Schema
	if !dsnSetsPlanCacheMode(pc.ConnConfig.RuntimeParams) {
		pc.ConnConfig.RuntimeParams[planCacheMode] = "force_custom_plan"
	}

	ms, err := loadMigrations(migrationFiles, migrationDir)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, pc.ConnConfig, cfg.Schema, ms); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("cannot open postgres pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot reach postgres: %w", err)
	}
	return pool, nil
}

// planCacheMode is the server setting (PostgreSQL 12 and later) that
// chooses between a prepared statement's generic plan and one planned for
// its parameters. Parley's connections plan every statement for its
// parameters ("force_custom_plan") unless the DSN sets it. pgx prepares
// every statement, and after five runs PostgreSQL may keep a generic plan,
// made without the parameters' values: for the batched reads
// (= ANY($1::text[]), JOIN unnest($1::text[], ...)) it assumes 10 or 100
// keys and, while a table is small enough — the first hours of a
// deployment — reads the whole table and hashes it where a few index
// lookups would do, and keeps that plan as the table grows until the next
// ANALYZE. With plans for the real parameters the same scale-out run
// spent 31% less of PostgreSQL's CPU (docs/benchmarks.md).
const planCacheMode = "plan_cache_mode"

// dsnSetsPlanCacheMode tells whether the DSN's server settings (params,
// as pgx parsed them) choose a plan_cache_mode: as a setting of its own,
// in any case, or inside options (-c plan_cache_mode=...), which the
// server applies before the other settings, so Parley's would win.
func dsnSetsPlanCacheMode(params map[string]string) bool {
	for k, v := range params {
		if strings.EqualFold(k, planCacheMode) || (k == "options" && strings.Contains(strings.ToLower(v), planCacheMode)) {
			return true
		}
	}
	return false
}

// dsnSetsPoolSize tells whether dsn (a URL or key=value pairs) names
// pool_max_conns.
func dsnSetsPoolSize(dsn string) bool {
	return strings.Contains(dsn, "pool_max_conns")
}
