package progress

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/internal/pebblekv"
)

// Pebble reads the progress that a read model kept in an embedded Pebble
// store commits in the same batch as its data (PebbleMarks): Save has
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

// Save implements Backend: the data committed it already (PebbleMarks).
func (p *Pebble) Save(ctx context.Context, next map[int32]int64) (map[int32]int64, error) {
	return committed{}.Save(ctx, next)
}

// PebbleMarks commits a read model's progress in the batches that write
// its data, so both commit together. Progress never moves backwards. It
// reads each partition's stored progress once and remembers what it
// committed since, so that a batch costs no read: one PebbleMarks per
// read model, the only writer of its progress.
type PebbleMarks struct {
	db   *pebble.DB
	name string

	mu    sync.Mutex
	known map[int32]int64     // partition → stored next offset
	at    map[int32]time.Time // partition → when a commit last wrote it
}

// NewPebbleMarks returns the marks of the read model called name in db.
func NewPebbleMarks(db *pebble.DB, name string) *PebbleMarks {
	return &PebbleMarks{db: db, name: name, known: map[int32]int64{}, at: map[int32]time.Time{}}
}

// MarkEvery is how often CommitReplayable writes a partition's progress
// (a variable for tests).
var MarkEvery = time.Second

// CommitReplayable is Commit for a batch that the read model may apply
// again without changing anything (messages it would find it holds, say):
// it writes the progress only if the partition's was last written
// MarkEvery ago or more, and commits b either way (not at all when b is
// empty and the progress waits). Most batches of a busy node are such,
// and a progress key per batch was about a quarter of the store's
// memtable. The stored progress then lags what the read model holds by
// at most MarkEvery, so a start after a crash applies those records
// again, to no effect; a clean stop saves the exact progress (SaveMarks).
// The tracker readers wait on moves with every batch either way.
func (m *PebbleMarks) CommitReplayable(b *pebble.Batch, partition int32, next int64) error {
	m.mu.Lock()
	at, ok := m.at[partition]
	m.mu.Unlock()
	if !ok || time.Since(at) >= MarkEvery {
		return m.Commit(b, partition, next)
	}
	if b.Empty() {
		return nil
	}
	return b.Commit(pebble.NoSync)
}

// CommitThrough commits b with the progress through the last record of
// recs: with CommitReplayable when recs are new messages only
// (projections.OnlyMessages), which a read model that skips a message it
// holds applies again to no effect, else with Commit. Any other event
// writes the progress at once: a read, say, applied again after later
// messages would move its cursor further than it did.
func (m *PebbleMarks) CommitThrough(b *pebble.Batch, recs []projections.Record) error {
	last := recs[len(recs)-1].Position
	if projections.OnlyMessages(recs) {
		return m.CommitReplayable(b, last.Partition, last.Offset+1)
	}
	return m.Commit(b, last.Partition, last.Offset+1)
}

// Name is the read model's name, under which its progress is kept.
func (m *PebbleMarks) Name() string { return m.name }

// Commit writes into b that the read model has applied partition up to
// (not including) next, unless it is already further, and commits b
// without a sync (the log is the record of truth: after a crash the read
// model resumes from what it holds).
func (m *PebbleMarks) Commit(b *pebble.Batch, partition int32, next int64) error {
	stored, err := m.stored(partition)
	if err != nil {
		return err
	}
	if next > stored {
		if err := b.Set(pebbleKey(m.name, partition), binary.BigEndian.AppendUint64(nil, uint64(next)), nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	m.mu.Lock()
	m.known[partition] = max(m.known[partition], next)
	m.at[partition] = time.Now()
	m.mu.Unlock()
	return nil
}

// SaveMarks writes, for a read model whose batches may leave its stored
// progress behind (CommitReplayable), the progress its tracker holds: at
// a clean stop, once nothing applies batches any more, so that the next
// start resumes exactly there.
func SaveMarks(db *pebble.DB, name string, t *Tracker, partitions int32) error {
	next := make(map[int32]int64, partitions)
	for p := range partitions {
		if n := t.Next(p); n > 0 {
			next[p] = n
		}
	}
	_, err := NewPebbleSaved(db, name).Save(context.Background(), next)
	return err
}

func (m *PebbleMarks) stored(partition int32) (int64, error) {
	m.mu.Lock()
	next, ok := m.known[partition]
	m.mu.Unlock()
	if ok {
		return next, nil
	}
	v, found, err := pebblekv.Get(m.db, pebbleKey(m.name, partition))
	if err != nil || !found || len(v) != 8 {
		return 0, err
	}
	next = int64(binary.BigEndian.Uint64(v))
	m.mu.Lock()
	m.known[partition] = max(m.known[partition], next)
	m.mu.Unlock()
	return next, nil
}

// PebbleSaved keeps progress in an embedded Pebble store for a tracker
// that has no data to commit it with (what the log acknowledged, say):
// Save writes it, never backwards.
type PebbleSaved struct {
	*Pebble
	marks *PebbleMarks
}

// NewPebbleSaved returns the saving backend of the progress called name.
func NewPebbleSaved(db *pebble.DB, name string) *PebbleSaved {
	return &PebbleSaved{Pebble: NewPebble(db, name), marks: NewPebbleMarks(db, name)}
}

// Save implements Backend.
func (p *PebbleSaved) Save(_ context.Context, next map[int32]int64) (map[int32]int64, error) {
	out := make(map[int32]int64, len(next))
	for partition, n := range next {
		b := p.db.NewBatch()
		err := p.marks.Commit(b, partition, n)
		_ = b.Close()
		if err != nil {
			return nil, err
		}
		stored, err := p.marks.stored(partition)
		if err != nil {
			return nil, err
		}
		out[partition] = stored
	}
	return out, nil
}
