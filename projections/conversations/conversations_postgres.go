package conversations

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/coalesce"
	"github.com/parley-chat/parley/projections"
)

// Postgres keeps the index in the conversations, account_conversations,
// conversation_reads and conversation_messages tables (see infra/postgres's
// migrations), with the projection's progress written in the same
// transaction.
type Postgres struct {
	pool     *pgxpool.Pool
	progress string
	// commits writes the batches of concurrent partitions in one
	// transaction (see applyBatch).
	commits *coalesce.Coalescer[[]projections.Record, struct{}]
}

// commitRuns is how many transactions of merged batches may be in flight
// at once: while one commits, the next is read and tallied.
const commitRuns = 2

var _ Index = (*Postgres)(nil)

// NewPostgres returns the index of pool; progressName is the name of the
// projection's rows in projection_progress.
func NewPostgres(pool *pgxpool.Pool, progressName string) *Postgres {
	p := &Postgres{pool: pool, progress: progressName}
	// Settle: a partition's batch that is in a transaction settles before
	// ApplyBatch returns, even when the partition's context ends (a
	// rebalance hands the partition to another process, which must not
	// apply the same records while this transaction may still commit);
	// the transaction itself is abandoned once every partition in it has
	// gone.
	p.commits = coalesce.New(coalesce.Config{MaxRuns: commitRuns, Settle: true}, p.applyBatches)
	return p
}

// postgresBacking holds the rows a batch touches, read (and locked) in two
// statements; only a read up to an older msgid asks for more.
type postgresBacking struct {
	ctx     context.Context
	tx      pgx.Tx
	convs   map[domain.ConversationID]convState
	cursors map[cursorKey]cursor
}

func (b *postgresBacking) conv(c domain.ConversationID) (convState, bool, error) {
	s, ok := b.convs[c]
	return s, ok, nil
}

func (b *postgresBacking) cursor(c domain.ConversationID, a domain.AccountID) (cursor, bool, error) {
	s, ok := b.cursors[cursorKey{c, a}]
	return s, ok, nil
}

func (b *postgresBacking) seqAt(c domain.ConversationID, at domain.MsgID) (int64, error) {
	var n int64
	err := b.tx.QueryRow(b.ctx, `
SELECT seq FROM conversation_messages WHERE conversation = $1 AND msg_id <= $2 ORDER BY msg_id DESC LIMIT 1`,
		c.String(), int64(at)).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return n, err
}

func (b *postgresBacking) sentAt(c domain.ConversationID, a domain.AccountID, at domain.MsgID) (int64, error) {
	var n int64
	err := b.tx.QueryRow(b.ctx, `
SELECT sender_seq FROM conversation_messages WHERE conversation = $1 AND sender = $2 AND msg_id <= $3 ORDER BY msg_id DESC LIMIT 1`,
		c.String(), string(a), int64(at)).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return n, err
}

// load reads the rows of convs and keys, locking them: a partition has
// one writer, but during a rebalance two may overlap for a moment. The two
// statements go out together, in one round trip.
func (b *postgresBacking) load(convs []domain.ConversationID, keys []cursorKey) error {
	cs := make([]string, len(convs))
	for i, c := range convs {
		cs[i] = c.String()
	}
	kc, ka := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		kc[i], ka[i] = k.c.String(), string(k.a)
	}
	var batch pgx.Batch
	batch.Queue(`
SELECT conversation, latest_msg_id, latest_time, message_count FROM conversations
WHERE conversation = ANY($1::text[]) ORDER BY conversation FOR UPDATE`, cs)
	batch.Queue(`
SELECT r.conversation, r.account, r.read_msg_id, r.read_seq, r.sent, r.sent_at_read
FROM conversation_reads r JOIN unnest($1::text[], $2::text[]) AS k(conversation, account)
  ON r.conversation = k.conversation AND r.account = k.account
ORDER BY 1, 2 FOR UPDATE OF r`, kc, ka)
	br := b.tx.SendBatch(b.ctx, &batch)
	return errors.Join(b.loadConvs(br), b.loadCursors(br), br.Close())
}

// loadConvs reads the batch's conversations from br's first result.
func (b *postgresBacking) loadConvs(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var conv string
		var id int64
		var s convState
		if err := rows.Scan(&conv, &id, &s.Time, &s.Count); err != nil {
			return err
		}
		c, err := domain.ParseConversationID(conv)
		if err != nil {
			return err
		}
		s.Latest = domain.MsgID(id)
		b.convs[c] = s
	}
	return rows.Err()
}

// loadCursors reads the batch's cursors from br's second result.
func (b *postgresBacking) loadCursors(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var conv, account string
		var id int64
		var s cursor
		if err := rows.Scan(&conv, &account, &id, &s.ReadSeq, &s.Sent, &s.SentAtRead); err != nil {
			return err
		}
		c, err := domain.ParseConversationID(conv)
		if err != nil {
			return err
		}
		s.ReadMsgID = domain.MsgID(id)
		b.cursors[cursorKey{c, domain.AccountID(account)}] = s
	}
	return rows.Err()
}

// applyBatch applies the records of one partition, with the batches of
// the other partitions that arrive while a transaction is in flight:
// each partition applies one batch at a time, so a single node's batches
// are a message or two, and a transaction for each (nine statements and a
// commit) made the index most of PostgreSQL's work in scale-out. Merged,
// they cost one transaction: partitions hold different conversations, so
// their records tally apart whatever the order. It returns once its
// records are committed, or once they never will be. A batch that fails
// (a database error) fails the partitions merged with it too; each
// retries.
func (p *Postgres) applyBatch(ctx context.Context, recs []projections.Record) error {
	_, err := p.commits.Do(ctx, recs)
	return err
}

// applyBatches applies batches of different partitions in one
// transaction: two reads for the rows they touch, then one statement per
// table for what changed, and one for every partition's progress; the
// reads go out together, and so do the writes, so that it costs four
// round trips with its begin and commit (and two queries more for each
// read up to an older message).
func (p *Postgres) applyBatches(ctx context.Context, batches [][]projections.Record) ([]struct{}, error) {
	var recs []projections.Record
	next := map[int32]int64{}
	for _, b := range batches {
		recs = append(recs, b...)
		last := b[len(b)-1].Position
		next[last.Partition] = max(next[last.Partition], last.Offset+1)
	}
	parts := slices.Sorted(maps.Keys(next)) // one lock order for every writer
	offsets := make([]int64, len(parts))
	for i, part := range parts {
		offsets[i] = next[part]
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		convs, keys := keysOf(recs)
		b := &postgresBacking{ctx: ctx, tx: tx, convs: map[domain.ConversationID]convState{}, cursors: map[cursorKey]cursor{}}
		if len(convs) > 0 {
			if err := b.load(convs, keys); err != nil {
				return fmt.Errorf("cannot read the conversation index: %w", err)
			}
		}
		t := newTally(b)
		defer t.release()
		if err := t.apply(recs); err != nil {
			return err
		}
		var writes pgx.Batch
		queueTally(&writes, t)
		writes.Queue(saveProgressesSQL, p.progress, parts, offsets)
		if err := tx.SendBatch(ctx, &writes).Close(); err != nil {
			return fmt.Errorf("cannot write the conversation index: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return make([]struct{}, len(batches)), nil
}

// saveProgressesSQL is saveProgressSQL for several partitions at once.
const saveProgressesSQL = `
INSERT INTO projection_progress (projection, partition, next_offset)
SELECT $1, * FROM unnest($2::int[], $3::bigint[])
ON CONFLICT (projection, partition) DO UPDATE
SET next_offset = GREATEST(projection_progress.next_offset, EXCLUDED.next_offset), updated_at = now()`

// saveProgressSQL records the index's progress in the transaction that
// wrote what it covers; it never moves back.
const saveProgressSQL = `
INSERT INTO projection_progress (projection, partition, next_offset) VALUES ($1, $2, $3)
ON CONFLICT (projection, partition) DO UPDATE
SET next_offset = GREATEST(projection_progress.next_offset, EXCLUDED.next_offset), updated_at = now()`

// queueTally queues into b the statements that write what t changed.
func queueTally(b *pgx.Batch, t *tally) {
	if n := len(t.dirtyConvs); n > 0 {
		convs, ids, times, counts := make([]string, n), make([]int64, n), make([]time.Time, n), make([]int64, n)
		var accounts, accountConvs []string
		for i, c := range t.dirtyConvs {
			s := t.convs[c]
			convs[i], ids[i], times[i], counts[i] = c.String(), int64(s.Latest), s.Time, s.Count
			if !t.fresh[c] {
				continue // the accounts' rows came with the first message
			}
			for _, a := range participants(c) {
				accounts = append(accounts, string(a))
				accountConvs = append(accountConvs, c.String())
			}
		}
		b.Queue(`
INSERT INTO conversations (conversation, latest_msg_id, latest_time, message_count)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::bigint[])
ON CONFLICT (conversation) DO UPDATE
SET latest_msg_id = EXCLUDED.latest_msg_id, latest_time = EXCLUDED.latest_time, message_count = EXCLUDED.message_count
WHERE conversations.latest_msg_id < EXCLUDED.latest_msg_id`, convs, ids, times, counts)
		if len(accounts) > 0 {
			b.Queue(`
INSERT INTO account_conversations (account, conversation)
SELECT * FROM unnest($1::text[], $2::text[]) ORDER BY 1, 2 ON CONFLICT DO NOTHING`, accounts, accountConvs)
		}
	}
	if n := len(t.dirtyCursors); n > 0 {
		convs, accounts := make([]string, n), make([]string, n)
		ids, seqs, sent, sentAt := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		for i, k := range t.dirtyCursors {
			s := t.cursors[k]
			convs[i], accounts[i] = k.c.String(), string(k.a)
			ids[i], seqs[i], sent[i], sentAt[i] = int64(s.ReadMsgID), s.ReadSeq, s.Sent, s.SentAtRead
		}
		b.Queue(`
INSERT INTO conversation_reads (conversation, account, read_msg_id, read_seq, sent, sent_at_read)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
ON CONFLICT (conversation, account) DO UPDATE
SET read_msg_id = EXCLUDED.read_msg_id, read_seq = EXCLUDED.read_seq, sent = EXCLUDED.sent, sent_at_read = EXCLUDED.sent_at_read`, convs, accounts, ids, seqs, sent, sentAt)
	}
	if n := len(t.added); n > 0 {
		convs, ids, seqs, senders, senderSeqs := make([]string, n), make([]int64, n), make([]int64, n), make([]string, n), make([]int64, n)
		for i, a := range t.added {
			convs[i], ids[i], seqs[i], senders[i], senderSeqs[i] = a.Conversation.String(), int64(a.MsgID), a.Seq, string(a.Sender), a.SenderSeq
		}
		b.Queue(`
INSERT INTO conversation_messages (conversation, msg_id, seq, sender, sender_seq)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[]) ON CONFLICT DO NOTHING`, convs, ids, seqs, senders, senderSeqs)
	}
}

// List implements Index.
func (p *Postgres) List(ctx context.Context, account domain.AccountID, groups []domain.GroupID, q Query) (Page, error) {
	gconvs := make([]string, len(groups))
	for i, g := range groups {
		gconvs[i] = domain.GroupConversation(g).String()
	}
	// The page, one more row to tell whether the list goes on, and how
	// many conversations the account has: what the query looked at.
	var after *time.Time
	if !q.After.Time.IsZero() {
		after = &q.After.Time
	}
	rows, err := p.pool.Query(ctx, `
WITH mine AS (
    SELECT conversation FROM account_conversations WHERE account = $1
    UNION SELECT unnest($2::text[])
)
SELECT c.conversation, c.latest_msg_id, c.latest_time, c.message_count,
       coalesce(r.read_msg_id, 0), coalesce(r.read_seq, 0), coalesce(r.sent, 0), coalesce(r.sent_at_read, 0),
       (SELECT count(*) FROM account_conversations WHERE account = $1),
       (SELECT count(*) FROM conversations WHERE conversation = ANY($2::text[]))
FROM conversations c LEFT JOIN conversation_reads r ON r.conversation = c.conversation AND r.account = $1
WHERE c.conversation IN (SELECT conversation FROM mine)
  AND c.latest_time > $3
  AND ($5::timestamptz IS NULL OR c.latest_time < $5 OR (c.latest_time = $5 AND c.conversation COLLATE "C" > $6))
ORDER BY c.latest_time DESC, c.conversation COLLATE "C" LIMIT $4`, string(account), gconvs, q.Since, q.Limit+1, after, q.After.Conversation.String())
	if err != nil {
		return Page{}, fmt.Errorf("cannot read the conversations of %s: %w", account, err)
	}
	defer rows.Close()
	var page Page
	for rows.Next() {
		var conv string
		var l Latest
		var id, count, readID, directs, groupsWith int64
		var cur cursor
		if err := rows.Scan(&conv, &id, &l.Time, &count, &readID, &cur.ReadSeq, &cur.Sent, &cur.SentAtRead, &directs, &groupsWith); err != nil {
			return Page{}, err
		}
		if l.Conversation, err = domain.ParseConversationID(conv); err != nil {
			return Page{}, err
		}
		cur.ReadMsgID = domain.MsgID(readID)
		l.MsgID, l.ReadMsgID, l.Unread = domain.MsgID(id), cur.ReadMsgID, cur.unread(count)
		page.Entries = append(page.Entries, l)
		page.Considered, page.EmptyGroups = int(directs+groupsWith), len(groups)-int(groupsWith)
	}
	if err := rows.Err(); err != nil {
		return Page{}, err
	}
	if len(page.Entries) == 0 { // the counts came with no row: ask for them
		var directs, groupsWith int64
		if err := p.pool.QueryRow(ctx, `
SELECT (SELECT count(*) FROM account_conversations WHERE account = $1),
       (SELECT count(*) FROM conversations WHERE conversation = ANY($2::text[]))`, string(account), gconvs).Scan(&directs, &groupsWith); err != nil {
			return Page{}, fmt.Errorf("cannot count the conversations of %s: %w", account, err)
		}
		page.Considered, page.EmptyGroups = int(directs+groupsWith), len(groups)-int(groupsWith)
	}
	if len(page.Entries) > q.Limit {
		page.Entries, page.More = page.Entries[:q.Limit], true
	}
	return page, nil
}

// ReadState implements Reads.
func (p *Postgres) ReadState(ctx context.Context, c domain.ConversationID, account domain.AccountID) (ReadState, error) {
	var latest, count, readID int64
	var cur cursor
	err := p.pool.QueryRow(ctx, `
SELECT coalesce(c.latest_msg_id, 0), coalesce(c.message_count, 0),
       coalesce(r.read_msg_id, 0), coalesce(r.read_seq, 0), coalesce(r.sent, 0), coalesce(r.sent_at_read, 0)
FROM (SELECT $1::text AS conversation) k
LEFT JOIN conversations c ON c.conversation = k.conversation
LEFT JOIN conversation_reads r ON r.conversation = k.conversation AND r.account = $2`, c.String(), string(account)).
		Scan(&latest, &count, &readID, &cur.ReadSeq, &cur.Sent, &cur.SentAtRead)
	if err != nil {
		return ReadState{}, fmt.Errorf("cannot read the cursor of %s in %s: %w", account, c, err)
	}
	cur.ReadMsgID = domain.MsgID(readID)
	return ReadState{Latest: domain.MsgID(latest), ReadMsgID: cur.ReadMsgID, Unread: cur.unread(count)}, nil
}

// ReadMsgIDs implements Reads.
func (p *Postgres) ReadMsgIDs(ctx context.Context, c domain.ConversationID, accounts []domain.AccountID) ([]domain.MsgID, error) {
	as := make([]string, len(accounts))
	for i, a := range accounts {
		as[i] = string(a)
	}
	rows, err := p.pool.Query(ctx, `
SELECT account, read_msg_id FROM conversation_reads WHERE conversation = $1 AND account = ANY($2::text[])`, c.String(), as)
	if err != nil {
		return nil, fmt.Errorf("cannot read the cursors of %s: %w", c, err)
	}
	defer rows.Close()
	by := map[string]int64{}
	for rows.Next() {
		var a string
		var id int64
		if err := rows.Scan(&a, &id); err != nil {
			return nil, err
		}
		by[a] = id
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]domain.MsgID, len(accounts))
	for i, a := range as {
		out[i] = domain.MsgID(by[a])
	}
	return out, nil
}

// Apply implements projections.Projection: a batch of one.
func (p *Postgres) Apply(ctx context.Context, r projections.Record) error {
	return p.ApplyBatch(ctx, []projections.Record{r})
}

// ApplyBatch implements projections.Batcher: the records between
// erasures as one batch each, and each erasure after the records before
// it.
func (p *Postgres) ApplyBatch(ctx context.Context, recs []projections.Record) error {
	return eraseRuns(ctx, recs, p.applyBatch, p.erase)
}

// erase drops a's cursors but for what it sent (cursor.erased); in cannot
// be told in SQL and is not used.
func (p *Postgres) erase(ctx context.Context, a domain.AccountID, _ func(domain.ConversationID) bool, pos events.Position) error {
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM conversation_reads WHERE account = $1 AND sent = 0`, string(a)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE conversation_reads SET read_msg_id = 0, read_seq = 0, sent_at_read = 0
WHERE account = $1 AND read_msg_id <> 0`, string(a)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, saveProgressSQL,
			p.progress, pos.Partition, pos.Offset+1)
		return err
	})
	if err != nil {
		return fmt.Errorf("cannot erase the read cursors of %s: %w", a, err)
	}
	return nil
}
