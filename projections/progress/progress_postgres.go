package progress

import (
	"context"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres keeps a read model's progress in projection_progress, beside
// its tables (infra/postgres's migrations create it).
type Postgres struct {
	pool *pgxpool.Pool
	name string
}

// NewPostgres returns the backend of the read model called name.
func NewPostgres(pool *pgxpool.Pool, name string) *Postgres { return &Postgres{pool: pool, name: name} }

const loadPostgresSQL = `SELECT partition, next_offset FROM projection_progress WHERE projection = $1`

// Load implements Backend.
func (p *Postgres) Load(ctx context.Context) (map[int32]int64, error) {
	return collect(p.pool.Query(ctx, loadPostgresSQL, p.name))
}

// savePostgresSQL keeps progress from moving backwards (GREATEST) when
// another writer of the same read model got further, and RETURNING tells
// this one how far that is.
const savePostgresSQL = `
INSERT INTO projection_progress (projection, partition, next_offset)
SELECT $1, partition, next_offset FROM unnest($2::integer[], $3::bigint[]) AS t(partition, next_offset)
ON CONFLICT (projection, partition) DO UPDATE
SET next_offset = GREATEST(projection_progress.next_offset, EXCLUDED.next_offset), updated_at = now()
RETURNING partition, next_offset`

// Save implements Backend.
func (p *Postgres) Save(ctx context.Context, next map[int32]int64) (map[int32]int64, error) {
	parts := slices.Sorted(maps.Keys(next)) // one lock order for every writer
	offsets := make([]int64, len(parts))
	for i, part := range parts {
		offsets[i] = next[part]
	}
	return collect(p.pool.Query(ctx, savePostgresSQL, p.name, parts, offsets))
}

func collect(rows pgx.Rows, err error) (map[int32]int64, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int32]int64{}
	for rows.Next() {
		var part int32
		var next int64
		if err := rows.Scan(&part, &next); err != nil {
			return nil, err
		}
		out[part] = next
	}
	return out, rows.Err()
}
