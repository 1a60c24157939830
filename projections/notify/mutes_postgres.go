package notify

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/domain"
)

// PostgresMutes keeps mutes in the conversation_mutes table (see
// infra/postgres's migrations).
type PostgresMutes struct{ pool *pgxpool.Pool }

var _ Mutes = (*PostgresMutes)(nil)

// NewPostgresMutes returns the mutes of pool.
func NewPostgresMutes(pool *pgxpool.Pool) *PostgresMutes { return &PostgresMutes{pool: pool} }

// Mute implements Mutes. The account's rows are counted under a lock of
// the account, so that concurrent mutes cannot pass MaxMutes together.
func (p *PostgresMutes) Mute(ctx context.Context, account domain.AccountID, c domain.ConversationID, until time.Time) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('parley.mutes/' || $1))`, string(account)); err != nil {
			return err
		}
		// A mute keeps none of the account's ended ones.
		if _, err := tx.Exec(ctx, `DELETE FROM conversation_mutes WHERE account = $1 AND until_ms <> 0 AND until_ms <= $2`,
			string(account), time.Now().UnixMilli()); err != nil {
			return err
		}
		var others int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM conversation_mutes
WHERE account = $1 AND conversation <> $2 AND (until_ms = 0 OR until_ms > $3)`,
			string(account), c.String(), time.Now().UnixMilli()).Scan(&others); err != nil {
			return err
		}
		if others >= MaxMutes {
			return tooMany(account)
		}
		_, err := tx.Exec(ctx, `INSERT INTO conversation_mutes (account, conversation, until_ms) VALUES ($1, $2, $3)
ON CONFLICT (account, conversation) DO UPDATE SET until_ms = EXCLUDED.until_ms`, string(account), c.String(), untilMillis(until))
		return err
	})
}

// Unmute implements Mutes.
func (p *PostgresMutes) Unmute(ctx context.Context, account domain.AccountID, c domain.ConversationID) error {
	_, err := p.pool.Exec(ctx, `DELETE FROM conversation_mutes WHERE account = $1 AND conversation = $2`, string(account), c.String())
	return err
}

// UnmuteAll implements Mutes.
func (p *PostgresMutes) UnmuteAll(ctx context.Context, account domain.AccountID) (bool, error) {
	tag, err := p.pool.Exec(ctx, `DELETE FROM conversation_mutes WHERE account = $1`, string(account))
	return tag.RowsAffected() > 0, err
}

// MutedUntil implements Mutes.
func (p *PostgresMutes) MutedUntil(ctx context.Context, account domain.AccountID, c domain.ConversationID) (time.Time, bool, error) {
	var ms int64
	err := p.pool.QueryRow(ctx, `SELECT until_ms FROM conversation_mutes WHERE account = $1 AND conversation = $2`,
		string(account), c.String()).Scan(&ms)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	return fromMillis(ms), true, nil
}

// MutesOf implements Mutes.
func (p *PostgresMutes) MutesOf(ctx context.Context, account domain.AccountID, now time.Time) (map[domain.ConversationID]time.Time, error) {
	rows, err := p.pool.Query(ctx, `SELECT conversation, until_ms FROM conversation_mutes
WHERE account = $1 AND (until_ms = 0 OR until_ms > $2)`, string(account), now.UnixMilli())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[domain.ConversationID]time.Time{}
	for rows.Next() {
		var conv string
		var ms int64
		if err := rows.Scan(&conv, &ms); err != nil {
			return nil, err
		}
		c, err := domain.ParseConversationID(conv)
		if err != nil {
			continue // written by Mute from a parsed id; never expected
		}
		out[c] = fromMillis(ms)
	}
	return out, rows.Err()
}
