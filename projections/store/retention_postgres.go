package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/parley-chat/parley/domain"
)

// Statements of the retention. The candidates come from the server_time
// indexes, oldest first; each conversation is then read in msgid order
// from its start, which is where its oldest messages are.
const (
	expiredDirectSQL = `
SELECT DISTINCT account_a, account_b FROM (
    SELECT account_a, account_b FROM direct_messages
    WHERE server_time < $1 ORDER BY server_time LIMIT $2) old`
	expiredGroupSQL = `
SELECT DISTINCT group_id FROM (
    SELECT group_id FROM group_messages
    WHERE server_time < $1 ORDER BY server_time LIMIT $2) old`
	oldestDirectSQL = `
SELECT msg_id, server_time FROM direct_messages
WHERE account_a = $1 AND account_b = $2 ORDER BY msg_id LIMIT $3`
	oldestGroupSQL = `
SELECT msg_id, server_time FROM group_messages
WHERE group_id = $1 ORDER BY msg_id LIMIT $2`

	raiseFloorSQL = `
INSERT INTO history_floors (conversation, gone_through) VALUES ($1, $2)
ON CONFLICT (conversation) DO UPDATE
SET gone_through = GREATEST(history_floors.gone_through, EXCLUDED.gone_through), updated_at = now()`
	removeDirectSQL = `
WITH gone AS (
    DELETE FROM direct_messages WHERE account_a = $1 AND account_b = $2 AND msg_id <= $3` + removeTail
	removeGroupSQL = `
WITH gone AS (
    DELETE FROM group_messages WHERE group_id = $1 AND msg_id <= $2` + removeTail
	// removeTail ends both removals: the client message id of a removed
	// message goes with it (matched on its primary key, and only where it
	// still names the message), and the count is of messages removed.
	removeTail = `
    RETURNING sender_account, client_msg_id, message_id
), ids AS (
    DELETE FROM client_msg_ids c USING gone
    WHERE c.sender_account = gone.sender_account AND c.client_msg_id = gone.client_msg_id
      AND c.message_id = gone.message_id
)
SELECT count(*) FROM gone`
	goneThroughSQL = `SELECT gone_through FROM history_floors WHERE conversation = $1`
)

// Expired implements Store.
func (s *Postgres) Expired(ctx context.Context, cutoff time.Time, max int) ([]Floor, error) {
	var convs []domain.ConversationID
	rows, err := s.pool.Query(ctx, expiredDirectSQL, cutoff, max)
	if err != nil {
		return nil, fmt.Errorf("cannot find old history: %w", err)
	}
	var a, b string
	_, err = pgx.ForEachRow(rows, []any{&a, &b}, func() error {
		convs = append(convs, domain.DirectConversation(domain.AccountID(a), domain.AccountID(b)))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot find old history: %w", err)
	}
	if rows, err = s.pool.Query(ctx, expiredGroupSQL, cutoff, max); err != nil {
		return nil, fmt.Errorf("cannot find old history: %w", err)
	}
	var g string
	_, err = pgx.ForEachRow(rows, []any{&g}, func() error {
		convs = append(convs, domain.GroupConversation(domain.GroupID(g)))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot find old history: %w", err)
	}
	var out []Floor
	budget := max
	for _, c := range convs {
		if budget <= 0 {
			break
		}
		run, err := s.oldest(ctx, c, cutoff, budget)
		if err != nil {
			return nil, err
		}
		if through, n, ok := expiredRun(run, cutoff); ok {
			out = append(out, Floor{Conversation: c, Through: through, Messages: n})
			budget -= n
		}
	}
	return out, nil
}

// oldest reads up to limit of c's oldest messages' msgids and times.
func (s *Postgres) oldest(ctx context.Context, c domain.ConversationID, cutoff time.Time, limit int) ([]domain.Message, error) {
	var rows pgx.Rows
	var err error
	if c.Kind() == domain.KindDirect {
		a, b := c.Accounts()
		rows, err = s.pool.Query(ctx, oldestDirectSQL, string(a), string(b), limit)
	} else {
		rows, err = s.pool.Query(ctx, oldestGroupSQL, string(c.Group()), limit)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read the oldest messages of %s: %w", c, err)
	}
	var out []domain.Message
	var id int64
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&id, &at}, func() error {
		out = append(out, domain.Message{MsgID: domain.MsgID(id), ServerTime: at})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read the oldest messages of %s: %w", c, err)
	}
	return out, nil
}

// Remove implements Store: the floors and deletions in one transaction
// and one round trip. A Save that commits while Remove runs over the same
// messages (a replay of old records at that moment) may store one the new
// floor covers; it is sent before the cutoff, so the next run removes it.
func (s *Postgres) Remove(ctx context.Context, floors ...Floor) (int, error) {
	if len(floors) == 0 {
		return 0, nil
	}
	b := &pgx.Batch{}
	removed := 0
	count := func(row pgx.Row) error {
		var n int
		err := row.Scan(&n)
		removed += n
		return err
	}
	for _, f := range floors {
		b.Queue(raiseFloorSQL, f.Conversation.String(), int64(f.Through))
		switch f.Conversation.Kind() {
		case domain.KindDirect:
			x, y := f.Conversation.Accounts()
			b.Queue(removeDirectSQL, string(x), string(y), int64(f.Through)).QueryRow(count)
		case domain.KindGroup:
			b.Queue(removeGroupSQL, string(f.Conversation.Group()), int64(f.Through)).QueryRow(count)
		default:
			return 0, errors.New("cannot remove history: a floor names no conversation")
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return 0, fmt.Errorf("cannot remove old history of %d conversations: %w", len(floors), err)
	}
	return removed, nil
}

// GoneThrough implements Store.
func (s *Postgres) GoneThrough(ctx context.Context, conv domain.ConversationID) (domain.MsgID, error) {
	var id int64
	err := s.pool.QueryRow(ctx, goneThroughSQL, conv.String()).Scan(&id)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("cannot read the history floor of %s: %w", conv, err)
	}
	return domain.MsgID(id), nil
}
