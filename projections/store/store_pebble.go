package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/internal/pebblekv"
	"github.com/parley-chat/parley/projections/progress"
)

// Pebble is the Store of a single node: the history in the embedded store,
// on disk, so that memory does not grow with it. Keys:
//
//	m/<conversation>/<msgid, 8 bytes big-endian>  the message
//	mi/<message id, 16 bytes>                     its conversation and msgid
//	mc/<account>/<client message id>              the same, for idempotency
//
// Ids never hold '/', so the separators are unambiguous, and a
// conversation's messages sort by msgid.
type Pebble struct {
	db    *pebble.DB
	marks *progress.PebbleMarks
}

var _ Store = (*Pebble)(nil)

// NewPebble returns the history in db; progressName is the name under
// which the projection's progress is kept (ApplyBatch commits it with the
// messages).
func NewPebble(db *pebble.DB, progressName string) *Pebble {
	return &Pebble{db: db, marks: progress.NewPebbleMarks(db, progressName)}
}

func convPrefix(c domain.ConversationID) []byte { return []byte("m/" + c.String() + "/") }

func messageKey(c domain.ConversationID, id domain.MsgID) []byte {
	return binary.BigEndian.AppendUint64(convPrefix(c), uint64(id))
}

func idKey(id uuid.UUID) []byte { return append([]byte("mi/"), id[:]...) }

func clientIndexKey(a domain.AccountID, clientMsgID string) []byte {
	return []byte("mc/" + string(a) + "/" + clientMsgID)
}

// pointer is the value of the index keys: where a message is.
func pointer(c domain.ConversationID, id domain.MsgID) []byte {
	return binary.BigEndian.AppendUint64([]byte(c.String()), uint64(id))
}

func readPointer(v []byte) (domain.ConversationID, domain.MsgID, error) {
	if len(v) < 9 {
		return domain.ConversationID{}, 0, errors.New("corrupt message index")
	}
	c, err := domain.ParseConversationID(string(v[:len(v)-8]))
	return c, domain.MsgID(binary.BigEndian.Uint64(v[len(v)-8:])), err
}

// messageFormat leads every stored message, so that the layout can grow.
const messageFormat = 1

func encodeMessage(m domain.Message) []byte {
	b := make([]byte, 0, 64+len(m.ClientMsgID)+len(m.Body))
	b = append(b, messageFormat)
	b = append(b, m.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(m.ServerTime.UnixMilli()))
	for _, s := range []string{m.ClientMsgID, string(m.Sender.Account), string(m.Sender.Device), m.Kind, m.Body} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func decodeMessage(c domain.ConversationID, id domain.MsgID, v []byte) (domain.Message, error) {
	if len(v) < 25 || v[0] != messageFormat {
		return domain.Message{}, fmt.Errorf("corrupt message %s/%d", c, id)
	}
	m := domain.Message{Conversation: c, MsgID: id}
	copy(m.ID[:], v[1:17])
	m.ServerTime = time.UnixMilli(int64(binary.BigEndian.Uint64(v[17:25])))
	rest := v[25:]
	var fields [5]string
	for i := range fields {
		n, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < n {
			return domain.Message{}, fmt.Errorf("corrupt message %s/%d", c, id)
		}
		fields[i] = string(rest[k : k+int(n)])
		rest = rest[k+int(n):]
	}
	m.ClientMsgID, m.Sender.Account, m.Sender.Device, m.Kind, m.Body = fields[0], domain.AccountID(fields[1]), domain.DeviceID(fields[2]), fields[3], fields[4]
	return m, nil
}

// save writes msgs into b: a message whose msgid or message id is taken
// is skipped; a client message id is kept by the first message that uses
// it. fromLog says msgs come from the log past the store's own progress:
// a msgid is an offset of the log, never applied before, so only the
// message id and the client message id need checking.
func (s *Pebble) save(b *pebble.Batch, msgs []domain.Message, fromLog bool) error {
	look, err := pebblekv.NewLookup(s.db)
	if err != nil {
		return err
	}
	defer look.Close()
	// Keys this call wrote: the lookup sees the store as it was.
	wrote := make(map[string]bool, 2*len(msgs))
	taken := func(k []byte) (bool, error) {
		if wrote[string(k)] {
			return true, nil
		}
		return look.Has(k)
	}
	for _, m := range msgs {
		key, id := messageKey(m.Conversation, m.MsgID), idKey(m.ID)
		keys := [][]byte{key, id}
		if fromLog {
			keys = keys[1:]
		}
		skip := false
		for _, k := range keys {
			if skip, err = taken(k); err != nil {
				return err
			}
			if skip {
				break
			}
		}
		if skip {
			continue
		}
		at := pointer(m.Conversation, m.MsgID)
		if err := b.Set(key, encodeMessage(m), nil); err != nil {
			return err
		}
		if err := b.Set(id, at, nil); err != nil {
			return err
		}
		wrote[string(key)], wrote[string(id)] = true, true
		ck := clientIndexKey(m.Sender.Account, m.ClientMsgID)
		used, err := taken(ck)
		if err != nil {
			return err
		}
		if !used {
			if err := b.Set(ck, at, nil); err != nil {
				return err
			}
			wrote[string(ck)] = true
		}
	}
	return nil
}

// Save implements Store.
func (s *Pebble) Save(_ context.Context, msgs ...domain.Message) error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := s.save(b, msgs, false); err != nil {
		return err
	}
	return b.Commit(pebble.NoSync)
}

// ApplyBatch implements projections.Batcher: the batch's messages and the
// progress through its last record commit together. No fsync: the log is
// the record of truth, and after a crash of the machine the store resumes
// from what its own progress says it holds.
func (s *Pebble) ApplyBatch(_ context.Context, recs []projections.Record) error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := s.save(b, projections.Messages(recs, nil), true); err != nil {
		return err
	}
	last := recs[len(recs)-1].Position
	if err := s.marks.Commit(b, last.Partition, last.Offset+1); err != nil {
		return fmt.Errorf("cannot write the history: %w", err)
	}
	return nil
}

// After implements Store.
func (s *Pebble) After(_ context.Context, conv domain.ConversationID, after domain.MsgID, limit int) ([]domain.Message, bool, error) {
	prefix := convPrefix(conv)
	upper := append([]byte(nil), prefix...)
	upper[len(upper)-1]++
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: messageKey(conv, after+1), UpperBound: upper})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	var out []domain.Message
	for it.First(); it.Valid(); it.Next() {
		if len(out) == limit {
			return out, true, nil
		}
		k := it.Key()
		m, err := decodeMessage(conv, domain.MsgID(binary.BigEndian.Uint64(k[len(k)-8:])), it.Value())
		if err != nil {
			return nil, false, err
		}
		out = append(out, m)
	}
	return out, false, it.Error()
}

// ByClientMsgID implements Store.
func (s *Pebble) ByClientMsgID(_ context.Context, account domain.AccountID, clientMsgID string) (domain.Message, bool, error) {
	look, err := pebblekv.NewLookup(s.db)
	if err != nil {
		return domain.Message{}, false, err
	}
	defer look.Close()
	v, ok, err := look.Get(clientIndexKey(account, clientMsgID))
	if err != nil || !ok {
		return domain.Message{}, false, err
	}
	conv, id, err := readPointer(v)
	if err != nil {
		return domain.Message{}, false, err
	}
	raw, ok, err := look.Get(messageKey(conv, id))
	if err != nil || !ok {
		return domain.Message{}, false, fmt.Errorf("cannot read message %s/%d: %v", conv, id, err)
	}
	m, err := decodeMessage(conv, id, raw)
	return m, err == nil, err
}

// Apply implements projections.Projection: a batch of one.
func (s *Pebble) Apply(ctx context.Context, r projections.Record) error {
	return s.ApplyBatch(ctx, []projections.Record{r})
}
