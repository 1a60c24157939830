package progress

import (
	"context"
	"encoding/binary"

	"github.com/cockroachdb/pebble/v2"
	"github.com/parley-chat/parley/projections/internal/pebblekv"
)

// Pebble reads the progress that a read model kept in an embedded Pebble
// store commits in the same batch as its data (PebbleSet): Save has
// nothing left to do, and a restart resumes exactly after what the data
// holds.
type Pebble struct {
	db   *pebble.DB
	name string
}

// NewPebble returns the backend of the read model called name.
func NewPebble(db *pebble.DB, name string) *Pebble { return &Pebble{db: db, name: name} }

func pebblePrefix(name string) []byte { return append([]byte("p/"+name), '/') }

// pebbleKey is "p/<name>/<partition, 4 bytes big-endian>".
func pebbleKey(name string, partition int32) []byte {
	return binary.BigEndian.AppendUint32(pebblePrefix(name), uint32(partition))
}

// Load implements Backend.
func (p *Pebble) Load(context.Context) (map[int32]int64, error) {
	prefix := pebblePrefix(p.name)
	it, err := pebblekv.Prefix(p.db, prefix)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[int32]int64{}
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != len(prefix)+4 || len(v) != 8 {
			continue
		}
		out[int32(binary.BigEndian.Uint32(k[len(prefix):]))] = int64(binary.BigEndian.Uint64(v))
	}
	return out, it.Error()
}

// Save implements Backend: the data committed it already (PebbleSet).
func (p *Pebble) Save(ctx context.Context, next map[int32]int64) (map[int32]int64, error) {
	return committed{}.Save(ctx, next)
}

// PebbleSet writes, into b, that the read model called name has applied
// partition up to (not including) next, unless db already says further:
// progress never moves backwards. Call it in the batch that writes the
// data, so both commit together.
func PebbleSet(db pebble.Reader, b *pebble.Batch, name string, partition int32, next int64) error {
	key := pebbleKey(name, partition)
	v, ok, err := pebblekv.Get(db, key)
	if err != nil {
		return err
	}
	if ok && len(v) == 8 && int64(binary.BigEndian.Uint64(v)) >= next {
		return nil
	}
	return b.Set(key, binary.BigEndian.AppendUint64(nil, uint64(next)), nil)
}
