package conversations

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
)

// Postgres keeps the index in the conversations and account_conversations
// tables (see infra/postgres's migrations), with the projection's progress
// written in the same transaction.
type Postgres struct {
	pool     *pgxpool.Pool
	progress string
}

var _ Index = (*Postgres)(nil)

// NewPostgres returns the index of pool; progressName is the name of the
// projection's rows in projection_progress.
func NewPostgres(pool *pgxpool.Pool, progressName string) *Postgres {
	return &Postgres{pool: pool, progress: progressName}
}

// ApplyBatch implements projections.Batcher: one statement for the
// batch's conversations (GREATEST keeps the newest), one for the direct
// ones' accounts, one for progress.
func (p *Postgres) ApplyBatch(ctx context.Context, recs []projections.Record) error {
	ls := latestOf(recs)
	convs := make([]string, len(ls))
	ids := make([]int64, len(ls))
	times := make([]time.Time, len(ls))
	var accounts, accountConvs []string
	for i, l := range ls {
		convs[i], ids[i], times[i] = l.Conversation.String(), int64(l.MsgID), l.Time
		for _, a := range participants(l.Conversation) {
			accounts = append(accounts, string(a))
			accountConvs = append(accountConvs, l.Conversation.String())
		}
	}
	last := recs[len(recs)-1].Position
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if len(ls) > 0 {
			if _, err := tx.Exec(ctx, `
INSERT INTO conversations (conversation, latest_msg_id, latest_time)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) ORDER BY 1
ON CONFLICT (conversation) DO UPDATE
SET latest_msg_id = EXCLUDED.latest_msg_id, latest_time = EXCLUDED.latest_time
WHERE conversations.latest_msg_id < EXCLUDED.latest_msg_id`, convs, ids, times); err != nil {
				return fmt.Errorf("cannot write the conversation index: %w", err)
			}
		}
		if len(accounts) > 0 {
			if _, err := tx.Exec(ctx, `
INSERT INTO account_conversations (account, conversation)
SELECT * FROM unnest($1::text[], $2::text[]) ORDER BY 1, 2 ON CONFLICT DO NOTHING`, accounts, accountConvs); err != nil {
				return fmt.Errorf("cannot write the conversation index: %w", err)
			}
		}
		_, err := tx.Exec(ctx, `
INSERT INTO projection_progress (projection, partition, next_offset) VALUES ($1, $2, $3)
ON CONFLICT (projection, partition) DO UPDATE
SET next_offset = GREATEST(projection_progress.next_offset, EXCLUDED.next_offset), updated_at = now()`,
			p.progress, last.Partition, last.Offset+1)
		return err
	})
}

// List implements Index.
func (p *Postgres) List(ctx context.Context, account domain.AccountID, groups []domain.GroupID, since time.Time, limit int) ([]Latest, error) {
	gconvs := make([]string, len(groups))
	for i, g := range groups {
		gconvs[i] = domain.GroupConversation(g).String()
	}
	rows, err := p.pool.Query(ctx, `
SELECT c.conversation, c.latest_msg_id, c.latest_time FROM conversations c
WHERE (c.conversation IN (SELECT conversation FROM account_conversations WHERE account = $1) OR c.conversation = ANY($2::text[]))
  AND c.latest_time > $3
ORDER BY c.latest_time DESC, c.conversation COLLATE "C" LIMIT $4`, string(account), gconvs, since, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot read the conversations of %s: %w", account, err)
	}
	defer rows.Close()
	var out []Latest
	for rows.Next() {
		var conv string
		var l Latest
		var at time.Time
		var id int64
		if err := rows.Scan(&conv, &id, &at); err != nil {
			return nil, err
		}
		if l.Conversation, err = domain.ParseConversationID(conv); err != nil {
			return nil, err
		}
		l.MsgID, l.Time = domain.MsgID(id), at
		out = append(out, l)
	}
	return out, rows.Err()
}

// Apply implements projections.Projection: a batch of one.
func (p *Postgres) Apply(ctx context.Context, r projections.Record) error {
	return p.ApplyBatch(ctx, []projections.Record{r})
}
