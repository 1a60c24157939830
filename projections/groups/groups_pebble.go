package groups

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/internal/pebblekv"
	"github.com/parley-chat/parley/projections/progress"
)

// Pebble keeps groups in the embedded store, with the projection's
// progress committed in the same batch as the changes. Keys:
//
//	g/<group>            name, owner, member count
//	gm/<group>/<account> a member
//	ga/<account>/<group> the same, by account
//
// Ids never hold '/', so the separators are unambiguous.
type Pebble struct {
	db    *pebble.DB
	marks *progress.PebbleMarks
	// OnChange, if set, is called after a batch commits, with each group
	// it changed (to forget cached copies).
	OnChange func(domain.GroupID)
}

var _ Model = (*Pebble)(nil)

// NewPebble returns the groups of db; progressName is the name under
// which the projection's progress is kept (see progress.NewPebble).
func NewPebble(db *pebble.DB, progressName string) *Pebble {
	return &Pebble{db: db, marks: progress.NewPebbleMarks(db, progressName)}
}

func groupKey(g domain.GroupID) []byte { return []byte("g/" + string(g)) }
func memberKey(g domain.GroupID, a domain.AccountID) []byte {
	return []byte("gm/" + string(g) + "/" + string(a))
}
func accountKey(a domain.AccountID, g domain.GroupID) []byte {
	return []byte("ga/" + string(a) + "/" + string(g))
}

// groupRow is a group's g/ value.
type groupRow struct {
	name, owner string
	count       int
}

func (r groupRow) encode() []byte {
	b := binary.AppendUvarint(nil, uint64(len(r.name)))
	b = append(b, r.name...)
	b = binary.AppendUvarint(b, uint64(len(r.owner)))
	b = append(b, r.owner...)
	return binary.AppendUvarint(b, uint64(r.count))
}

func decodeGroupRow(b []byte) (groupRow, error) {
	var r groupRow
	str := func() (string, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return "", errors.New("corrupt group row")
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, nil
	}
	var err error
	if r.name, err = str(); err != nil {
		return r, err
	}
	if r.owner, err = str(); err != nil {
		return r, err
	}
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return r, errors.New("corrupt group row")
	}
	r.count = int(n)
	return r, nil
}

// get reads key from r; ok is false when it is absent.
func get(r pebble.Reader, key []byte) (val []byte, ok bool, err error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	val = append([]byte(nil), v...)
	return val, true, closer.Close()
}

// ApplyBatch implements projections.Batcher: the batch's group changes and
// the progress through its last record commit together.
func (p *Pebble) ApplyBatch(_ context.Context, recs []projections.Record) error {
	last := recs[len(recs)-1].Position
	changes := changesOf(recs, nil)
	if len(changes) == 0 { // most batches: messages only, progress only
		// Applying them again changes nothing: the progress may wait.
		b := p.db.NewBatch()
		defer b.Close()
		return p.marks.CommitReplayable(b, last.Partition, last.Offset+1)
	}
	// An indexed batch: a change reads what the changes before it wrote.
	b := p.db.NewIndexedBatch()
	defer b.Close()
	changed := map[domain.GroupID]struct{}{}
	for _, c := range changes {
		did, err := p.apply(b, c)
		if err != nil {
			var poison *projections.PoisonError
			if errors.As(err, &poison) {
				continue // a change to a group this log never created
			}
			return err
		}
		if did {
			changed[c.group] = struct{}{}
		}
	}
	if err := p.marks.Commit(b, last.Partition, last.Offset+1); err != nil {
		return fmt.Errorf("cannot write groups: %w", err)
	}
	if p.OnChange != nil {
		for g := range changed {
			p.OnChange(g)
		}
	}
	return nil
}

// apply writes one change into b and reports whether it changed anything.
func (p *Pebble) apply(b *pebble.Batch, c change) (bool, error) {
	raw, exists, err := get(b, groupKey(c.group))
	if err != nil {
		return false, err
	}
	if c.created != nil {
		if exists {
			return false, nil
		}
		g := c.created
		members := g.Members()
		if err := b.Set(groupKey(g.ID()), groupRow{name: g.Name(), owner: string(g.Owner()), count: len(members)}.encode(), nil); err != nil {
			return false, err
		}
		for _, a := range members {
			if err := p.setMember(b, g.ID(), a); err != nil {
				return false, err
			}
		}
		return true, nil
	}
	if !exists {
		return false, unknownGroup(c.group)
	}
	row, err := decodeGroupRow(raw)
	if err != nil {
		return false, err
	}
	var todo []domain.AccountID
	seen := map[domain.AccountID]bool{}
	for _, a := range c.accounts {
		if seen[a] || !c.add && a == domain.AccountID(row.owner) {
			continue // the owner is always a member (domain.Group.Remove)
		}
		seen[a] = true
		_, member, err := get(b, memberKey(c.group, a))
		if err != nil {
			return false, err
		}
		if member != c.add {
			todo = append(todo, a)
		}
	}
	if len(todo) == 0 {
		return false, nil
	}
	if c.add {
		if row.count+len(todo) > domain.MaxGroupMembers {
			return false, nil // past the size limit: the log's later add loses
		}
		for _, a := range todo {
			if err := p.setMember(b, c.group, a); err != nil {
				return false, err
			}
		}
		row.count += len(todo)
	} else {
		for _, a := range todo {
			if err := b.Delete(memberKey(c.group, a), nil); err != nil {
				return false, err
			}
			if err := b.Delete(accountKey(a, c.group), nil); err != nil {
				return false, err
			}
		}
		row.count -= len(todo)
	}
	return true, b.Set(groupKey(c.group), row.encode(), nil)
}

func (p *Pebble) setMember(b *pebble.Batch, g domain.GroupID, a domain.AccountID) error {
	if err := b.Set(memberKey(g, a), nil, nil); err != nil {
		return err
	}
	return b.Set(accountKey(a, g), nil, nil)
}

// prefixIter iterates the keys under prefix.
func prefixIter(r pebble.Reader, prefix string) (*pebble.Iterator, error) {
	return pebblekv.Prefix(r, []byte(prefix))
}

// Group implements Model.
func (p *Pebble) Group(_ context.Context, g domain.GroupID) (*domain.Group, bool, error) {
	return p.group(p.db, g)
}

func (p *Pebble) group(r pebble.Reader, g domain.GroupID) (*domain.Group, bool, error) {
	raw, ok, err := get(r, groupKey(g))
	if err != nil || !ok {
		return nil, false, err
	}
	row, err := decodeGroupRow(raw)
	if err != nil {
		return nil, false, err
	}
	it, err := prefixIter(r, "gm/"+string(g)+"/")
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	members := make([]domain.AccountID, 0, row.count)
	prefix := len("gm/" + string(g) + "/")
	for it.First(); it.Valid(); it.Next() {
		members = append(members, domain.AccountID(it.Key()[prefix:]))
	}
	if err := it.Error(); err != nil {
		return nil, false, err
	}
	grp, err := domain.NewGroup(g, row.name, domain.AccountID(row.owner), members)
	if err != nil {
		return nil, false, fmt.Errorf("cannot read group %s: %w", g, err)
	}
	return grp, true, nil
}

// IsMember implements Model.
func (p *Pebble) IsMember(_ context.Context, g domain.GroupID, a domain.AccountID) (bool, bool, error) {
	look, err := pebblekv.NewLookup(p.db)
	if err != nil {
		return false, false, err
	}
	defer look.Close()
	exists, err := look.Has(groupKey(g))
	if err != nil || !exists {
		return false, false, err
	}
	member, err := look.Has(memberKey(g, a))
	return true, member, err
}

// GroupIDsOf implements Model.
func (p *Pebble) GroupIDsOf(_ context.Context, a domain.AccountID) ([]domain.GroupID, error) {
	return groupIDsOf(p.db, a)
}

// groupIDsOf lists a's groups from r's account index, in key order.
func groupIDsOf(r pebble.Reader, a domain.AccountID) ([]domain.GroupID, error) {
	it, err := prefixIter(r, "ga/"+string(a)+"/")
	if err != nil {
		return nil, err
	}
	var ids []domain.GroupID
	prefix := len("ga/" + string(a) + "/")
	for it.First(); it.Valid(); it.Next() {
		ids = append(ids, domain.GroupID(it.Key()[prefix:]))
	}
	if err := it.Error(); err != nil {
		_ = it.Close()
		return nil, err
	}
	return ids, it.Close()
}

// GroupsOf implements Model.
func (p *Pebble) GroupsOf(_ context.Context, a domain.AccountID) ([]*domain.Group, error) {
	snap := p.db.NewSnapshot()
	defer snap.Close()
	ids, err := groupIDsOf(snap, a)
	if err != nil {
		return nil, err
	}
	out := make([]*domain.Group, 0, len(ids))
	for _, id := range ids {
		g, ok, err := p.group(snap, id)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, g)
		}
	}
	return out, nil
}

// Apply implements projections.Projection: a batch of one.
func (p *Pebble) Apply(ctx context.Context, r projections.Record) error {
	return p.ApplyBatch(ctx, []projections.Record{r})
}
