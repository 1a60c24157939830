package groups

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
)

// Postgres keeps groups in the groups and group_members tables (see
// infra/postgres's migrations), with the projection's progress written to
// projection_progress in the same transaction as the changes (see
// ApplyBatch for the batches without changes).
type Postgres struct {
	pool     *pgxpool.Pool
	progress string
}

var _ Model = (*Postgres)(nil)

// NewPostgres returns the groups of pool; progressName is the name of the
// projection's rows in projection_progress.
func NewPostgres(pool *pgxpool.Pool, progressName string) *Postgres {
	return &Postgres{pool: pool, progress: progressName}
}

// ApplyBatch implements projections.Batcher. A batch without a group
// change (nearly every batch: messages) writes nothing: a transaction per
// partition and batch for the progress alone took most of the pool's
// connections and commits in scale-out, and the send path's lookups
// queued behind them. Its progress is the tracker's to save, with the
// other partitions', so the tracker needs a backend that saves
// (progress.NewPostgres, not progress.Committed) or waiters in other
// processes would wait for the next group change. A batch with changes
// commits its progress with them: applied twice, a change could count a
// member twice.
func (p *Postgres) ApplyBatch(ctx context.Context, recs []projections.Record) error {
	changes := changesOf(recs, nil)
	if len(changes) == 0 {
		return nil
	}
	last := recs[len(recs)-1].Position
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		for _, c := range changes {
			if err := applyPostgres(ctx, tx, c); err != nil {
				var poison *projections.PoisonError
				if errors.As(err, &poison) {
					continue
				}
				return err
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

func applyPostgres(ctx context.Context, tx pgx.Tx, c change) error {
	if c.created != nil {
		g := c.created
		members := accountStrings(g.Members())
		// name_bytes holds the name as it is (it may hold NUL, which text
		// cannot); name, for processes of the version before, without NUL.
		tag, err := tx.Exec(ctx, `INSERT INTO groups (group_id, name, name_bytes, owner, members) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
			string(g.ID()), strings.ReplaceAll(g.Name(), "\x00", "\uFFFD"), []byte(g.Name()), string(g.Owner()), len(members))
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO group_members (group_id, account) SELECT $1, a FROM unnest($2::text[]) AS a ON CONFLICT DO NOTHING`,
			string(g.ID()), members)
		return err
	}
	var count int
	err := tx.QueryRow(ctx, `SELECT members FROM groups WHERE group_id = $1 FOR UPDATE`, string(c.group)).Scan(&count)
	if errors.Is(err, pgx.ErrNoRows) {
		return unknownGroup(c.group)
	}
	if err != nil {
		return err
	}
	accounts := accountStrings(c.accounts)
	if c.add {
		var fresh int
		if err := tx.QueryRow(ctx, `SELECT count(DISTINCT a) FROM unnest($2::text[]) AS a
WHERE NOT EXISTS (SELECT 1 FROM group_members WHERE group_id = $1 AND account = a)`, string(c.group), accounts).Scan(&fresh); err != nil {
			return err
		}
		if fresh == 0 || count+fresh > domain.MaxGroupMembers {
			return nil // nothing new, or past the size limit: the log's later add loses
		}
		_, err = tx.Exec(ctx, `
WITH added AS (
  INSERT INTO group_members (group_id, account) SELECT $1, a FROM unnest($2::text[]) AS a ON CONFLICT DO NOTHING RETURNING 1
)
UPDATE groups SET members = members + (SELECT count(*) FROM added) WHERE group_id = $1`, string(c.group), accounts)
		return err
	}
	_, err = tx.Exec(ctx, `
WITH gone AS (
  DELETE FROM group_members WHERE group_id = $1 AND account = ANY($2::text[])
    AND account <> (SELECT owner FROM groups WHERE group_id = $1) -- an owner is always a member
  RETURNING 1
)
UPDATE groups SET members = members - (SELECT count(*) FROM gone) WHERE group_id = $1`, string(c.group), accounts)
	return err
}

func accountStrings(in []domain.AccountID) []string {
	out := make([]string, len(in))
	for i, a := range in {
		out[i] = string(a)
	}
	return out
}

// Group implements Model.
func (p *Postgres) Group(ctx context.Context, g domain.GroupID) (*domain.Group, bool, error) {
	var name []byte
	var owner string
	var members []string
	err := p.pool.QueryRow(ctx, `
SELECT COALESCE(name_bytes, convert_to(name, 'UTF8')), owner, ARRAY(SELECT account FROM group_members WHERE group_id = $1 ORDER BY account)
FROM groups WHERE group_id = $1`, string(g)).Scan(&name, &owner, &members)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("cannot read group %s: %w", g, err)
	}
	grp, err := restore(g, string(name), owner, members)
	return grp, err == nil, err
}

func restore(g domain.GroupID, name, owner string, members []string) (*domain.Group, error) {
	as := make([]domain.AccountID, len(members))
	for i, m := range members {
		as[i] = domain.AccountID(m)
	}
	grp, err := domain.NewGroup(g, name, domain.AccountID(owner), as)
	if err != nil {
		return nil, fmt.Errorf("cannot read group %s: %w", g, err)
	}
	return grp, nil
}

// IsMember implements Model.
func (p *Postgres) IsMember(ctx context.Context, g domain.GroupID, a domain.AccountID) (bool, bool, error) {
	var exists, member bool
	err := p.pool.QueryRow(ctx, `
SELECT EXISTS (SELECT 1 FROM groups WHERE group_id = $1),
       EXISTS (SELECT 1 FROM group_members WHERE group_id = $1 AND account = $2)`, string(g), string(a)).Scan(&exists, &member)
	if err != nil {
		return false, false, fmt.Errorf("cannot read membership of %s: %w", g, err)
	}
	return exists, member, nil
}

// GroupIDsOf implements Model.
func (p *Postgres) GroupIDsOf(ctx context.Context, a domain.AccountID) ([]domain.GroupID, error) {
	rows, err := p.pool.Query(ctx, `SELECT group_id FROM group_members WHERE account = $1 ORDER BY group_id COLLATE "C"`, string(a))
	if err != nil {
		return nil, fmt.Errorf("cannot read the groups of %s: %w", a, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("cannot read the groups of %s: %w", a, err)
	}
	out := make([]domain.GroupID, len(ids))
	for i, id := range ids {
		out[i] = domain.GroupID(id)
	}
	return out, nil
}

// GroupsOf implements Model.
func (p *Postgres) GroupsOf(ctx context.Context, a domain.AccountID) ([]*domain.Group, error) {
	rows, err := p.pool.Query(ctx, `
SELECT g.group_id, COALESCE(g.name_bytes, convert_to(g.name, 'UTF8')), g.owner, ARRAY(SELECT account FROM group_members x WHERE x.group_id = g.group_id ORDER BY account)
FROM group_members m JOIN groups g ON g.group_id = m.group_id
WHERE m.account = $1 ORDER BY g.group_id`, string(a))
	if err != nil {
		return nil, fmt.Errorf("cannot read the groups of %s: %w", a, err)
	}
	defer rows.Close()
	var out []*domain.Group
	for rows.Next() {
		var id, owner string
		var name []byte
		var members []string
		if err := rows.Scan(&id, &name, &owner, &members); err != nil {
			return nil, err
		}
		g, err := restore(domain.GroupID(id), string(name), owner, members)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// Apply implements projections.Projection: a batch of one.
func (p *Postgres) Apply(ctx context.Context, r projections.Record) error {
	return p.ApplyBatch(ctx, []projections.Record{r})
}
