package conversations

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/internal/pebblekv"
	"github.com/parley-chat/parley/projections/progress"
)

// Pebble keeps the index in the embedded store, with the projection's
// progress committed in the same batch. Keys:
//
//	cl/<conversation>           latest msgid and time (8 + 8 bytes)
//	ca/<account>/<conversation> a direct conversation of the account
type Pebble struct {
	db    *pebble.DB
	marks *progress.PebbleMarks
}

var _ Index = (*Pebble)(nil)

// NewPebble returns the index of db; progressName is the name under which
// the projection's progress is kept.
func NewPebble(db *pebble.DB, progressName string) *Pebble {
	return &Pebble{db: db, marks: progress.NewPebbleMarks(db, progressName)}
}

func latestKey(c domain.ConversationID) []byte { return []byte("cl/" + c.String()) }

func encodeLatest(l Latest) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(l.MsgID))
	return binary.BigEndian.AppendUint64(b, uint64(l.Time.UnixMilli()))
}

func decodeLatest(c domain.ConversationID, v []byte) (Latest, error) {
	if len(v) != 16 {
		return Latest{}, errors.New("corrupt conversation index entry")
	}
	return Latest{Conversation: c, MsgID: domain.MsgID(binary.BigEndian.Uint64(v)),
		Time: time.UnixMilli(int64(binary.BigEndian.Uint64(v[8:])))}, nil
}

// ApplyBatch implements projections.Batcher.
func (p *Pebble) ApplyBatch(_ context.Context, recs []projections.Record) error {
	b := p.db.NewBatch()
	defer b.Close()
	look, err := pebblekv.NewLookup(p.db)
	if err != nil {
		return err
	}
	defer look.Close()
	for _, l := range latestOf(recs) {
		v, ok, err := look.Get(latestKey(l.Conversation))
		if err != nil {
			return err
		}
		if ok {
			if cur, err := decodeLatest(l.Conversation, v); err == nil && cur.MsgID >= l.MsgID {
				continue
			}
		}
		if err := b.Set(latestKey(l.Conversation), encodeLatest(l), nil); err != nil {
			return err
		}
		if ok {
			continue // the accounts' entries came with the first message
		}
		for _, a := range participants(l.Conversation) {
			if err := b.Set([]byte("ca/"+string(a)+"/"+l.Conversation.String()), nil, nil); err != nil {
				return err
			}
		}
	}
	last := recs[len(recs)-1].Position
	if err := p.marks.Commit(b, last.Partition, last.Offset+1); err != nil {
		return fmt.Errorf("cannot write the conversation index: %w", err)
	}
	return nil
}

// List implements Index.
func (p *Pebble) List(_ context.Context, account domain.AccountID, groups []domain.GroupID, since time.Time, limit int) ([]Latest, error) {
	snap := p.db.NewSnapshot()
	defer snap.Close()
	prefix := "ca/" + string(account) + "/"
	it, err := pebblekv.Prefix(snap, []byte(prefix))
	if err != nil {
		return nil, err
	}
	var convs []domain.ConversationID
	for it.First(); it.Valid(); it.Next() {
		c, err := domain.ParseConversationID(string(it.Key()[len(prefix):]))
		if err == nil {
			convs = append(convs, c)
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, err
	}
	for _, g := range groups {
		convs = append(convs, domain.GroupConversation(g))
	}
	var out []Latest
	for _, c := range convs {
		v, closer, err := snap.Get(latestKey(c))
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		l, err := decodeLatest(c, v)
		_ = closer.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return newestFirst(out, since, limit), nil
}

// Apply implements projections.Projection: a batch of one.
func (p *Pebble) Apply(ctx context.Context, r projections.Record) error {
	return p.ApplyBatch(ctx, []projections.Record{r})
}

// LatestOf is conversation c's latest message in the index; ok is false
// when it has none.
func (p *Pebble) LatestOf(_ context.Context, c domain.ConversationID) (domain.MsgID, bool, error) {
	v, ok, err := pebblekv.Get(p.db, latestKey(c))
	if err != nil || !ok {
		return 0, false, err
	}
	l, err := decodeLatest(c, v)
	return l.MsgID, err == nil, err
}
