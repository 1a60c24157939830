package keys

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/events"
)

// Postgres keeps keys in the data_keys table (migration 0007), shared by
// every process of a cluster: one row per account with a live key.
type Postgres struct{ pool *pgxpool.Pool }

// NewPostgres returns the key store in pool's schema.
func NewPostgres(pool *pgxpool.Pool) *Postgres { return &Postgres{pool: pool} }

const (
	currentKeySQL = `SELECT key_id, secret FROM data_keys WHERE account = $1`
	// Two gateways may create an account's first key at once: the
	// unique account makes one insert win, and the other reads it.
	insertKeySQL  = `INSERT INTO data_keys (key_id, account, secret) VALUES ($1, $2, $3) ON CONFLICT (account) DO NOTHING`
	keyByIDSQL    = `SELECT account, secret FROM data_keys WHERE key_id = $1`
	destroyKeySQL = `DELETE FROM data_keys WHERE account = $1 RETURNING key_id`
)

// Current implements Store.
func (p *Postgres) Current(ctx context.Context, account string) (Key, error) {
	for range 2 {
		k := Key{Account: account}
		err := p.pool.QueryRow(ctx, currentKeySQL, account).Scan(&k.ID, &k.Secret)
		if err == nil {
			return k, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return Key{}, fmt.Errorf("cannot read the data key of %s: %w", account, err)
		}
		k = newKey(account)
		tag, err := p.pool.Exec(ctx, insertKeySQL, k.ID, k.Account, k.Secret)
		if err != nil {
			return Key{}, fmt.Errorf("cannot store a data key for %s: %w", account, err)
		}
		if tag.RowsAffected() == 1 {
			return k, nil
		}
		// Another process created it meanwhile: read that one.
	}
	return Key{}, fmt.Errorf("cannot settle on a data key for %s: it was destroyed while created", account)
}

// Key implements Store.
func (p *Postgres) Key(ctx context.Context, id string) (Key, error) {
	k := Key{ID: id}
	err := p.pool.QueryRow(ctx, keyByIDSQL, id).Scan(&k.Account, &k.Secret)
	if errors.Is(err, pgx.ErrNoRows) {
		return Key{}, events.ErrKeyDestroyed
	}
	if err != nil {
		return Key{}, fmt.Errorf("cannot read data key %s: %w", id, err)
	}
	return k, nil
}

// Destroy implements Store.
func (p *Postgres) Destroy(ctx context.Context, account string) ([]string, error) {
	rows, err := p.pool.Query(ctx, destroyKeySQL, account)
	if err != nil {
		return nil, fmt.Errorf("cannot destroy the data keys of %s: %w", account, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("cannot destroy the data keys of %s: %w", account, err)
	}
	return ids, nil
}
