package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/coalesce"
)

// Postgres is the durable Store of a scaled-out deployment (R5): the tables
// of infra/postgres/migrations, reached through a pool from postgres.Open
// (its search_path names the schema). ServerTime is kept to the microsecond.
type Postgres struct {
	pool *pgxpool.Pool
	// byClient answers the lookups of concurrent sends in one query: every
	// send looks its client message id up before it appends, and one
	// connection each would queue them behind the projections' writes.
	byClient *coalesce.Coalescer[pgClientKey, pgClientHit]
}

// pgClientKey is a client message id of an account; pgClientHit what the
// store holds under it.
type (
	pgClientKey struct{ account, clientMsgID string }
	pgClientHit struct {
		msg   domain.Message
		found bool
	}
)

// lookupRuns is how many lookup queries may be in flight at once, each
// on a connection of the pool it shares with the projections.
const lookupRuns = 2

// NewPostgres returns a Store on pool, which must come from postgres.Open.
func NewPostgres(pool *pgxpool.Pool) *Postgres {
	s := &Postgres{pool: pool}
	s.byClient = coalesce.New(coalesce.Config{MaxRuns: lookupRuns}, s.byClientMsgIDs)
	return s
}

// messageRow is a message as the tables hold it: a conversation is either
// an account pair or a group id, never both ("" for the absent one).
type messageRow struct {
	AccountA, AccountB string
	GroupID            string
	MsgID              int64
	MessageID          uuid.UUID
	ClientMsgID        string
	SenderAccount      string
	SenderDevice       string
	Kind               string
	Body               []byte
	ServerTime         time.Time
	EditedAt           pgtype.Timestamptz
	Deleted            bool
	Revision           int64
}

func toRow(m domain.Message) (messageRow, error) {
	r := messageRow{
		MsgID: int64(m.MsgID), MessageID: m.ID, ClientMsgID: m.ClientMsgID,
		SenderAccount: string(m.Sender.Account), SenderDevice: string(m.Sender.Device),
		Kind: m.Kind, Body: []byte(m.Body), ServerTime: m.ServerTime,
	}
	switch m.Conversation.Kind() {
	case domain.KindDirect:
		a, b := m.Conversation.Accounts()
		r.AccountA, r.AccountB = string(a), string(b)
	case domain.KindGroup:
		r.GroupID = string(m.Conversation.Group())
	default:
		return messageRow{}, fmt.Errorf("cannot store message %s: it has no conversation", m.ID)
	}
	return r, nil
}

func (r messageRow) message() domain.Message {
	conv := domain.GroupConversation(domain.GroupID(r.GroupID))
	if r.GroupID == "" {
		conv = domain.DirectConversation(domain.AccountID(r.AccountA), domain.AccountID(r.AccountB))
	}
	m := domain.Message{
		ID: r.MessageID, MsgID: domain.MsgID(r.MsgID), ClientMsgID: r.ClientMsgID,
		Sender:       domain.Sender{Account: domain.AccountID(r.SenderAccount), Device: domain.DeviceID(r.SenderDevice)},
		Conversation: conv, Kind: r.Kind, Body: string(r.Body), ServerTime: r.ServerTime,
		Deleted: r.Deleted, Revision: domain.MsgID(r.Revision),
	}
	if r.EditedAt.Valid {
		m.EditedAt = r.EditedAt.Time
	}
	return m
}

// saveSQL stores a batch in one statement and one round trip: the rows
// arrive as parallel arrays, go into their conversation's table in the
// caller's order, and the client message id of each row actually inserted
// is recorded. ON CONFLICT DO NOTHING without a target skips a row that
// collides on any unique key — (conversation, msg_id) or message_id — and
// a client message id already taken keeps its first message. A row at or
// below its conversation's floor (history_floors) was removed by the
// retention and is not stored again.
const saveSQL = `
WITH input AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::bigint[], $5::uuid[], $6::text[],
        $7::text[], $8::text[], $9::text[], $10::bytea[], $11::timestamptz[], $12::text[]
    ) WITH ORDINALITY AS t(account_a, account_b, group_id, msg_id, message_id, client_msg_id,
        sender_account, sender_device, kind, body, server_time, conversation, ord)
), direct AS (
    INSERT INTO direct_messages (account_a, account_b, msg_id, message_id, client_msg_id,
        sender_account, sender_device, kind, body, server_time)
    SELECT account_a, account_b, msg_id, message_id, client_msg_id,
        sender_account, sender_device, kind, body, server_time
    FROM input WHERE group_id = '' AND NOT EXISTS (
        SELECT 1 FROM history_floors f WHERE f.conversation = input.conversation AND f.gone_through >= input.msg_id)
    ORDER BY ord
    ON CONFLICT DO NOTHING
    RETURNING message_id, msg_id
), grp AS (
    INSERT INTO group_messages (group_id, msg_id, message_id, client_msg_id,
        sender_account, sender_device, kind, body, server_time)
    SELECT group_id, msg_id, message_id, client_msg_id,
        sender_account, sender_device, kind, body, server_time
    FROM input WHERE group_id <> '' AND NOT EXISTS (
        SELECT 1 FROM history_floors f WHERE f.conversation = input.conversation AND f.gone_through >= input.msg_id)
    ORDER BY ord
    ON CONFLICT DO NOTHING
    RETURNING message_id, msg_id
)
INSERT INTO client_msg_ids (sender_account, client_msg_id, conversation, msg_id, message_id)
SELECT i.sender_account, i.client_msg_id, i.conversation, i.msg_id, i.message_id
FROM input i JOIN (SELECT * FROM direct UNION ALL SELECT * FROM grp) stored USING (message_id, msg_id)
ORDER BY i.ord
ON CONFLICT DO NOTHING`

// saveAttempts bounds retries of a batch that lost a deadlock. Batches
// from the log do not deadlock (a conversation is one partition, applied in
// order), but two writers replaying overlapping batches in different orders
// could.
const saveAttempts = 3

// Save implements Store. The whole batch is one statement: it is stored
// entirely or not at all.
func (s *Postgres) Save(ctx context.Context, msgs ...domain.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	n := len(msgs)
	var (
		accountA, accountB, groupID = make([]string, n), make([]string, n), make([]string, n)
		msgID                       = make([]int64, n)
		messageID                   = make([]pgtype.UUID, n)
		clientMsgID, senderAccount  = make([]string, n), make([]string, n)
		senderDevice, kind, convs   = make([]string, n), make([]string, n), make([]string, n)
		body                        = make([][]byte, n)
		serverTime                  = make([]time.Time, n)
	)
	for i, m := range msgs {
		r, err := toRow(m)
		if err != nil {
			return err
		}
		accountA[i], accountB[i], groupID[i] = r.AccountA, r.AccountB, r.GroupID
		msgID[i], messageID[i] = r.MsgID, pgtype.UUID{Bytes: r.MessageID, Valid: true}
		clientMsgID[i], senderAccount[i], senderDevice[i] = r.ClientMsgID, r.SenderAccount, r.SenderDevice
		kind[i], body[i], serverTime[i] = r.Kind, r.Body, r.ServerTime
		convs[i] = m.Conversation.String()
	}
	var err error
	for attempt := 1; attempt <= saveAttempts; attempt++ {
		_, err = s.pool.Exec(ctx, saveSQL, accountA, accountB, groupID, msgID, messageID,
			clientMsgID, senderAccount, senderDevice, kind, body, serverTime, convs)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "40P01" { // deadlock_detected
			break
		}
	}
	if err != nil {
		return fmt.Errorf("cannot save %d messages: %w", n, err)
	}
	return nil
}

// The columns every read selects, in the order of messageRow.fields: a
// direct conversation's accounts, or a group's id, then the message.
const (
	directColumns  = `account_a, account_b, '', ` + messageColumns
	groupColumns   = `'', '', group_id, ` + messageColumns
	messageColumns = `msg_id, message_id, client_msg_id, sender_account, sender_device, kind, body, server_time,
    edited_at, deleted, revision`
)

const (
	afterDirectSQL = `
SELECT ` + directColumns + `
FROM direct_messages
WHERE account_a = $1 AND account_b = $2 AND msg_id > $3
ORDER BY msg_id
LIMIT $4`
	afterGroupSQL = `
SELECT ` + groupColumns + `
FROM group_messages
WHERE group_id = $1 AND msg_id > $2
ORDER BY msg_id
LIMIT $3`
)

// After implements Store.
func (s *Postgres) After(ctx context.Context, conv domain.ConversationID, after domain.MsgID, limit int) ([]domain.Message, bool, error) {
	return s.page(ctx, conv, afterDirectSQL, afterGroupSQL, after, limit)
}

// page runs one of the paged reads (After, Changes) of conv with after and
// limit as its parameters. It reads one row past limit to learn whether
// more follow.
func (s *Postgres) page(ctx context.Context, conv domain.ConversationID, directSQL, groupSQL string, after domain.MsgID, limit int) ([]domain.Message, bool, error) {
	if limit < 0 {
		return nil, false, fmt.Errorf("cannot read %s: limit %d is negative", conv, limit)
	}
	var (
		rows pgx.Rows
		err  error
	)
	switch conv.Kind() {
	case domain.KindDirect:
		a, b := conv.Accounts()
		rows, err = s.pool.Query(ctx, directSQL, string(a), string(b), int64(after), limit+1)
	case domain.KindGroup:
		rows, err = s.pool.Query(ctx, groupSQL, string(conv.Group()), int64(after), limit+1)
	default:
		return nil, false, errors.New("cannot read messages: no conversation given")
	}
	if err != nil {
		return nil, false, fmt.Errorf("cannot read %s: %w", conv, err)
	}
	msgs := make([]domain.Message, 0, min(limit+1, 64))
	var r messageRow
	_, err = pgx.ForEachRow(rows, r.fields(), func() error {
		msgs = append(msgs, r.message())
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("cannot read %s: %w", conv, err)
	}
	more := len(msgs) > limit
	if more {
		msgs = msgs[:limit]
	}
	return msgs, more, nil
}

// fields are the scan targets of r, in the column order of the queries.
func (r *messageRow) fields() []any {
	return []any{&r.AccountA, &r.AccountB, &r.GroupID, &r.MsgID, &r.MessageID, &r.ClientMsgID,
		&r.SenderAccount, &r.SenderDevice, &r.Kind, &r.Body, &r.ServerTime, &r.EditedAt, &r.Deleted, &r.Revision}
}

// messageOfClientID follows the client_msg_ids row c to its message, m,
// through the message_id unique index of whichever table holds it.
const messageOfClientID = `
CROSS JOIN LATERAL (
    SELECT account_a, account_b, '' AS group_id, msg_id, message_id, client_msg_id,
        sender_account, sender_device, kind, body, server_time, edited_at, deleted, revision
    FROM direct_messages d WHERE d.message_id = c.message_id
    UNION ALL
    SELECT '', '', group_id, msg_id, message_id, client_msg_id,
        sender_account, sender_device, kind, body, server_time, edited_at, deleted, revision
    FROM group_messages g WHERE g.message_id = c.message_id
) m`

// byClientSQL finds the message of one client message id.
const byClientSQL = `
SELECT m.account_a, m.account_b, m.group_id, m.msg_id, m.message_id, m.client_msg_id,
    m.sender_account, m.sender_device, m.kind, m.body, m.server_time, m.edited_at, m.deleted, m.revision
FROM client_msg_ids c` + messageOfClientID + `
WHERE c.sender_account = $1 AND c.client_msg_id = $2`

// byClientsSQL is byClientSQL for many keys at once: the keys come as two
// arrays, and each row names the key it answers.
const byClientsSQL = `
SELECT c.sender_account, c.client_msg_id,
    m.account_a, m.account_b, m.group_id, m.msg_id, m.message_id, m.client_msg_id,
    m.sender_account, m.sender_device, m.kind, m.body, m.server_time, m.edited_at, m.deleted, m.revision
FROM unnest($1::text[], $2::text[]) AS k(account, client_msg_id)
JOIN client_msg_ids c ON c.sender_account = k.account AND c.client_msg_id = k.client_msg_id` + messageOfClientID

// ByClientMsgID implements Store. Concurrent lookups share one query.
func (s *Postgres) ByClientMsgID(ctx context.Context, account domain.AccountID, clientMsgID string) (domain.Message, bool, error) {
	hit, err := s.byClient.Do(ctx, pgClientKey{account: string(account), clientMsgID: clientMsgID})
	if err != nil {
		return domain.Message{}, false, fmt.Errorf("cannot look up client message id of %s: %w", account, err)
	}
	return hit.msg, hit.found, nil
}

// byClientMsgIDs looks keys up in one query: byClientSQL's for one key,
// byClientsSQL's for more.
func (s *Postgres) byClientMsgIDs(ctx context.Context, keys []pgClientKey) ([]pgClientHit, error) {
	hits := make([]pgClientHit, len(keys))
	if len(keys) == 1 {
		var r messageRow
		err := s.pool.QueryRow(ctx, byClientSQL, keys[0].account, keys[0].clientMsgID).Scan(r.fields()...)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return hits, nil
		case err != nil:
			return nil, err
		}
		hits[0] = pgClientHit{msg: r.message(), found: true}
		return hits, nil
	}
	accounts := make([]string, len(keys))
	ids := make([]string, len(keys))
	for i, k := range keys {
		accounts[i], ids[i] = k.account, k.clientMsgID
	}
	rows, err := s.pool.Query(ctx, byClientsSQL, accounts, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := make(map[pgClientKey]domain.Message, len(keys))
	for rows.Next() {
		var k pgClientKey
		var r messageRow
		if err := rows.Scan(append([]any{&k.account, &k.clientMsgID}, r.fields()...)...); err != nil {
			return nil, err
		}
		found[k] = r.message()
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i, k := range keys {
		if m, ok := found[k]; ok {
			hits[i] = pgClientHit{msg: m, found: true}
		}
	}
	return hits, nil
}

// Statements of Amend. A change applies only to a message that is not a
// tombstone and has not seen it (revision below the change's); an edit
// that applied claims its client message id, unless the account used it.
const (
	editDirectSQL = `
WITH changed AS (
    UPDATE direct_messages SET body = $4, edited_at = $5, revision = $6
    WHERE account_a = $1 AND account_b = $2 AND msg_id = $3 AND NOT deleted AND revision < $6
    RETURNING message_id
)
INSERT INTO client_msg_ids (sender_account, client_msg_id, conversation, msg_id, message_id)
SELECT $7, $8, $9, $3, message_id FROM changed
ON CONFLICT DO NOTHING`
	editGroupSQL = `
WITH changed AS (
    UPDATE group_messages SET body = $3, edited_at = $4, revision = $5
    WHERE group_id = $1 AND msg_id = $2 AND NOT deleted AND revision < $5
    RETURNING message_id
)
INSERT INTO client_msg_ids (sender_account, client_msg_id, conversation, msg_id, message_id)
SELECT $6, $7, $8, $2, message_id FROM changed
ON CONFLICT DO NOTHING`
	deleteDirectSQL = `
UPDATE direct_messages SET body = '', edited_at = NULL, deleted = true, revision = $4
WHERE account_a = $1 AND account_b = $2 AND msg_id = $3 AND (NOT deleted OR revision = 0) AND revision < $4`
	deleteGroupSQL = `
UPDATE group_messages SET body = '', edited_at = NULL, deleted = true, revision = $3
WHERE group_id = $1 AND msg_id = $2 AND (NOT deleted OR revision = 0) AND revision < $3`
)

// Amend implements Store: the changes in order, in one transaction and one
// round trip.
func (s *Postgres) Amend(ctx context.Context, changes ...domain.Amendment) error {
	if len(changes) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, a := range changes {
		conv, id, rev := a.Conversation.String(), int64(a.MsgID), int64(a.Revision)
		switch k := a.Conversation.Kind(); {
		case k == domain.KindDirect && a.Delete:
			x, y := a.Conversation.Accounts()
			b.Queue(deleteDirectSQL, string(x), string(y), id, rev)
		case k == domain.KindDirect:
			x, y := a.Conversation.Accounts()
			b.Queue(editDirectSQL, string(x), string(y), id, []byte(a.Body), a.At, rev, string(a.By.Account), a.ClientMsgID, conv)
		case k == domain.KindGroup && a.Delete:
			b.Queue(deleteGroupSQL, string(a.Conversation.Group()), id, rev)
		case k == domain.KindGroup:
			b.Queue(editGroupSQL, string(a.Conversation.Group()), id, []byte(a.Body), a.At, rev, string(a.By.Account), a.ClientMsgID, conv)
		default:
			return fmt.Errorf("cannot change message %d: it names no conversation", a.MsgID)
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("cannot apply %d changes: %w", len(changes), err)
	}
	return nil
}

const (
	messageDirectSQL = `
SELECT ` + directColumns + `
FROM direct_messages
WHERE account_a = $1 AND account_b = $2 AND msg_id = $3`
	messageGroupSQL = `
SELECT ` + groupColumns + `
FROM group_messages
WHERE group_id = $1 AND msg_id = $2`
)

// Message implements Store.
func (s *Postgres) Message(ctx context.Context, conv domain.ConversationID, id domain.MsgID) (domain.Message, bool, error) {
	var row pgx.Row
	switch conv.Kind() {
	case domain.KindDirect:
		a, b := conv.Accounts()
		row = s.pool.QueryRow(ctx, messageDirectSQL, string(a), string(b), int64(id))
	case domain.KindGroup:
		row = s.pool.QueryRow(ctx, messageGroupSQL, string(conv.Group()), int64(id))
	default:
		return domain.Message{}, false, errors.New("cannot read a message: no conversation given")
	}
	var r messageRow
	err := row.Scan(r.fields()...)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return domain.Message{}, false, nil
	case err != nil:
		return domain.Message{}, false, fmt.Errorf("cannot read message %d of %s: %w", id, conv, err)
	}
	return r.message(), true, nil
}

// The erasure reads the account's messages that it covers (as
// domain.Erasure.Apply: not yet deleted by a change), keeps those of
// the conversations its record sweeps (the revision it sets is a position
// of that record's partition, comparable only with the msgids there), and
// tombstones them by primary key. No index leads to a sender's messages
// (one would cost every send a write): an erasure scans both history
// tables, once per partition of the log.
const (
	erasableDirectSQL = `
SELECT account_a, account_b, msg_id FROM direct_messages
WHERE sender_account = $1 AND server_time <= $2 AND (NOT deleted OR revision = 0)`
	erasableGroupSQL = `
SELECT group_id, msg_id FROM group_messages
WHERE sender_account = $1 AND server_time <= $2 AND (NOT deleted OR revision = 0)`
	eraseDirectSQL = `
UPDATE direct_messages d SET body = '', edited_at = NULL, deleted = true, revision = GREATEST(d.revision, $4)
FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(a, b, id)
WHERE d.account_a = u.a AND d.account_b = u.b AND d.msg_id = u.id AND (NOT d.deleted OR d.revision = 0)`
	eraseGroupSQL = `
UPDATE group_messages g SET body = '', edited_at = NULL, deleted = true, revision = GREATEST(g.revision, $3)
FROM unnest($1::text[], $2::bigint[]) AS u(g, id)
WHERE g.group_id = u.g AND g.msg_id = u.id AND (NOT g.deleted OR g.revision = 0)`
)

// Erase implements Store.
func (s *Postgres) Erase(ctx context.Context, e domain.Erasure, in func(domain.ConversationID) bool) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var (
			as, bs, gs []string
			dids, gids []int64
			a, b, g    string
			id         int64
		)
		rows, err := tx.Query(ctx, erasableDirectSQL, string(e.Account), e.At)
		if err != nil {
			return err
		}
		_, err = pgx.ForEachRow(rows, []any{&a, &b, &id}, func() error {
			if in(domain.DirectConversation(domain.AccountID(a), domain.AccountID(b))) {
				as, bs, dids = append(as, a), append(bs, b), append(dids, id)
			}
			return nil
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, erasableGroupSQL, string(e.Account), e.At)
		if err != nil {
			return err
		}
		_, err = pgx.ForEachRow(rows, []any{&g, &id}, func() error {
			if in(domain.GroupConversation(domain.GroupID(g))) {
				gs, gids = append(gs, g), append(gids, id)
			}
			return nil
		})
		if err != nil {
			return err
		}
		batch := &pgx.Batch{}
		batch.Queue(eraseDirectSQL, as, bs, dids, int64(e.Revision))
		batch.Queue(eraseGroupSQL, gs, gids, int64(e.Revision))
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return fmt.Errorf("cannot erase the messages of %s: %w", e.Account, err)
	}
	return nil
}

// changesSQL reads a conversation's changed messages through the partial
// indexes of migration 0008; "revision > 0" lets the planner use them.
const (
	changesDirectSQL = `
SELECT ` + directColumns + `
FROM direct_messages
WHERE account_a = $1 AND account_b = $2 AND revision > 0 AND revision > $3 AND msg_id <= $3
ORDER BY revision, msg_id
LIMIT $4`
	changesGroupSQL = `
SELECT ` + groupColumns + `
FROM group_messages
WHERE group_id = $1 AND revision > 0 AND revision > $2 AND msg_id <= $2
ORDER BY revision, msg_id
LIMIT $3`
)

// Changes implements Store.
func (s *Postgres) Changes(ctx context.Context, conv domain.ConversationID, after domain.MsgID, limit int) ([]domain.Message, bool, error) {
	return s.page(ctx, conv, changesDirectSQL, changesGroupSQL, after, limit)
}
