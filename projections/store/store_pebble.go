package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
//	mf/<conversation>                             its floor (retention_pebble.go)
//	mr/<conversation>/<revision><msgid>           a changed message (Changes)
//
// Ids never hold '/', so the separators are unambiguous, and a
// conversation's messages sort by msgid.
type Pebble struct {
	db    *pebble.DB
	marks *progress.PebbleMarks
	// filters answer lookups of keys the store does not hold from memory
	// once LoadFilter has read the store.
	filters filters

	// expireMu guards expireFrom, the message key where the next Expired
	// goes on.
	expireMu   sync.Mutex
	expireFrom []byte

	// floored is whether the store holds a history floor: until the
	// retention first removes something it holds none, and a batch need
	// not look one up for every conversation it saves to. Read once from
	// the store, then set by Remove.
	floorOnce sync.Once
	floorErr  error
	floored   atomic.Bool
}

var _ Store = (*Pebble)(nil)

// NewPebble returns the history in db; progressName is the name under
// which the projection's progress is kept (ApplyBatch commits it with the
// messages).
func NewPebble(db *pebble.DB, progressName string) *Pebble {
	return &Pebble{db: db, marks: progress.NewPebbleMarks(db, progressName), filters: filters{
		clients: pebblekv.NewFilter("mc/", 0), ids: pebblekv.NewFilter("mi/", 0), floors: pebblekv.NewFilter("mf/", 0)}}
}

// filters are the store's filters of the keys it holds, by kind: a
// writer adds a key before its batch commits.
type filters struct {
	// clients are the client message ids (mc/): a send looks its new one
	// up, and the history checks it again as it saves the message.
	clients *pebblekv.Filter
	// ids are the message ids (mi/) and floors the conversations'
	// floors (mf/): a store with a floor looks both up for every message
	// it saves.
	ids, floors *pebblekv.Filter
}

// kindFilter is a filter with the kind of key it holds, as /metrics
// names it.
type kindFilter struct {
	kind string
	f    *pebblekv.Filter
}

// each lists fs in the order a write begins on them.
func (fs filters) each() [3]kindFilter {
	return [3]kindFilter{{"client_msg_ids", fs.clients}, {"message_ids", fs.ids}, {"floors", fs.floors}}
}

// beginWrite begins a write on every filter, always in the same order
// (see Filter.BeginWrite); endWrite ends it once the write committed.
func (fs filters) beginWrite() {
	for _, k := range fs.each() {
		k.f.BeginWrite()
	}
}

func (fs filters) endWrite() {
	for _, k := range fs.each() {
		k.f.EndWrite()
	}
}

// answering is fs with only the filters that answer now, the others nil:
// a filter's Absent holds for a view of the store opened after it
// answered.
func (fs filters) answering() filters {
	on := func(f *pebblekv.Filter) *pebblekv.Filter {
		if f.Loaded() {
			return f
		}
		return nil
	}
	return filters{clients: on(fs.clients), ids: on(fs.ids), floors: on(fs.floors)}
}

// absent reports whether f, nil when it does not answer, knows the store
// does not hold k.
func absent(f *pebblekv.Filter, k []byte) bool { return f != nil && f.Absent(k) }

// LoadFilter reads the keys the store holds that it looks up as missing
// — client message ids, message ids, floors — into memory (1.5 bytes
// each, at most pebblekv.DefaultFilterBytes for each kind), so that
// looking up one the store does not hold, as every new send does, costs
// no read of the store. Until it returns, lookups read the store. The
// store must stay open until it returns.
func (s *Pebble) LoadFilter(ctx context.Context) error {
	for _, k := range s.filters.each() {
		if err := k.f.Load(ctx, s.db); err != nil {
			return err
		}
	}
	return nil
}

// KeepFilter is LoadFilter, then builds a filter again from what the store
// holds each time it outgrows its bound (pebblekv.Filter.Keep), until ctx
// ends. A filter that stops for good — the keys the store holds do not
// fit it (pebblekv.ErrOff), or its load failed — is reported to stopped
// with its kind as it stops; the others go on. Run it once, in the
// background; the store must stay open until it returns.
func (s *Pebble) KeepFilter(ctx context.Context, stopped func(kind string, err error)) {
	var wg sync.WaitGroup
	for _, k := range s.filters.each() {
		wg.Go(func() {
			if err := k.f.Keep(ctx, s.db); err != nil && !errors.Is(err, ctx.Err()) {
				stopped(k.kind, err)
			}
		})
	}
	wg.Wait()
}

// Filters calls report with each filter of LoadFilter, by the kind of
// key it holds: whether it answers, and the memory it takes.
func (s *Pebble) Filters(report func(kind string, loaded bool, bytes int64)) {
	for _, k := range s.filters.each() {
		report(k.kind, k.f.Loaded(), k.f.Bytes())
	}
}

func convPrefix(c domain.ConversationID) []byte { return []byte("m/" + c.String() + "/") }

func messageKey(c domain.ConversationID, id domain.MsgID) []byte {
	return binary.BigEndian.AppendUint64(convPrefix(c), uint64(id))
}

// changeKey indexes a changed message by its revision, so that Changes
// reads the changes after a msgid with one range scan. A message has one
// such key, for its latest revision.
func changeKey(c domain.ConversationID, rev, id domain.MsgID) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(changesPrefix(c), uint64(rev)), uint64(id))
}

func changesPrefix(c domain.ConversationID) []byte { return []byte("mr/" + c.String() + "/") }

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

// Formats of a stored message: the first byte, so that the layout can
// grow. messageFormat is a message as sent; changedFormat adds, after the
// same fields, the time of the last edit (8 bytes, Unix ms, 0 if none), a
// deleted flag (1 byte) and the revision (8 bytes).
const (
	messageFormat = 1
	changedFormat = 2
)

func encodeMessage(m domain.Message) []byte {
	b := make([]byte, 0, 64+len(m.ClientMsgID)+len(m.Body))
	format := byte(messageFormat)
	changed := !m.EditedAt.IsZero() || m.Deleted || m.Revision != 0
	if changed {
		format = changedFormat
	}
	b = append(b, format)
	b = append(b, m.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(m.ServerTime.UnixMilli()))
	for _, s := range []string{m.ClientMsgID, string(m.Sender.Account), string(m.Sender.Device), m.Kind, m.Body} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	if changed {
		var edited int64
		if !m.EditedAt.IsZero() {
			edited = m.EditedAt.UnixMilli()
		}
		b = binary.BigEndian.AppendUint64(b, uint64(edited))
		deleted := byte(0)
		if m.Deleted {
			deleted = 1
		}
		b = append(b, deleted)
		b = binary.BigEndian.AppendUint64(b, uint64(m.Revision))
	}
	return b
}

func decodeMessage(c domain.ConversationID, id domain.MsgID, v []byte) (domain.Message, error) {
	if len(v) < 25 || (v[0] != messageFormat && v[0] != changedFormat) {
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
	if v[0] == changedFormat {
		if len(rest) != 17 {
			return domain.Message{}, fmt.Errorf("corrupt message %s/%d", c, id)
		}
		if edited := int64(binary.BigEndian.Uint64(rest)); edited != 0 {
			m.EditedAt = time.UnixMilli(edited)
		}
		m.Deleted = rest[8] == 1
		m.Revision = domain.MsgID(binary.BigEndian.Uint64(rest[9:]))
	}
	return m, nil
}

// write is one batch being written, with what it wrote so far: the
// lookup sees the store as it was before the batch.
type write struct {
	db   *pebble.DB
	b    *pebble.Batch
	look *pebblekv.Lookup
	// filters are the store's, which every key of theirs written is
	// added to, begun on until the write has committed (close); answering
	// are those that answered before look was made, whose Absent so holds
	// for look.
	filters, answering filters
	wrote              map[string]bool
	// msgs are the messages this batch wrote, by key, so that a change
	// later in the batch finds them.
	msgs map[string]domain.Message
	// floors are the floors read so far (Save skips what is below);
	// floored is false when the store held none as the batch began.
	floors  map[domain.ConversationID]domain.MsgID
	floored bool
}

func (s *Pebble) newWrite(b *pebble.Batch) (*write, error) {
	// The write adds to the filters until it has committed (close), and
	// they answer for a view of the store opened after they did.
	s.filters.beginWrite()
	answering := s.filters.answering()
	// The lookup comes first: a Remove that committed before it was made
	// marked the store floored before committing, so the lookup never sees
	// a claim removed while floored says no floor (see fresh).
	look, err := pebblekv.NewLookup(s.db)
	if err != nil {
		s.filters.endWrite()
		return nil, err
	}
	floored, err := s.anyFloor()
	if err != nil {
		_ = look.Close()
		s.filters.endWrite()
		return nil, err
	}
	w := writes.Get().(*write)
	w.db, w.b, w.look, w.floored = s.db, b, look, floored
	w.filters, w.answering = s.filters, answering
	return w, nil
}

// writes keeps writes between batches: a single node's batch is often a
// message or two, and making a write's maps anew for each was a good part
// of what the history allocated.
var writes = sync.Pool{New: func() any {
	return &write{wrote: map[string]bool{}, msgs: map[string]domain.Message{}, floors: map[domain.ConversationID]domain.MsgID{}}
}}

// anyFloor reports whether the store holds a history floor.
func (s *Pebble) anyFloor() (bool, error) {
	s.floorOnce.Do(func() {
		it, err := pebblekv.Prefix(s.db, []byte("mf/"))
		if err != nil {
			s.floorErr = err
			return
		}
		if it.First() {
			s.floored.Store(true)
		}
		s.floorErr = errors.Join(it.Error(), it.Close())
	})
	return s.floored.Load(), s.floorErr
}

// close releases w, which may not be used afterwards.
func (w *write) close() {
	_ = w.look.Close()
	clear(w.wrote)
	clear(w.msgs)
	clear(w.floors)
	w.filters.endWrite()
	w.db, w.b, w.look, w.filters, w.answering = nil, nil, nil, filters{}, filters{}
	writes.Put(w)
}

// taken reports whether k is written, by this batch or before it; f,
// from answering (nil for a kind without a filter), spares the lookup of
// a key it knows the store does not hold.
func (w *write) taken(f *pebblekv.Filter, k []byte) (bool, error) {
	if w.wrote[string(k)] {
		return true, nil
	}
	if absent(f, k) {
		return false, nil
	}
	return w.look.Has(k)
}

func (w *write) set(k, v []byte) error {
	w.wrote[string(k)] = true
	return w.b.Set(k, v, nil)
}

// setClaim writes client message id key ck, in the filter first: before
// the batch commits.
func (w *write) setClaim(ck, at []byte) error {
	w.filters.clients.Add(ck)
	return w.set(ck, at)
}

// claim records that account used clientMsgID for the message at, unless
// it was used before.
func (w *write) claim(a domain.AccountID, clientMsgID string, at []byte) error {
	ck := clientIndexKey(a, clientMsgID)
	used, err := w.taken(w.answering.clients, ck)
	if err != nil || used {
		return err
	}
	return w.setClaim(ck, at)
}

// put writes m, which was old, at key, and moves its change index key
// to m's revision.
func (w *write) put(key []byte, old, m domain.Message) error {
	if err := w.set(key, encodeMessage(m)); err != nil {
		return err
	}
	w.msgs[string(key)] = m
	if old.Revision == m.Revision {
		return nil
	}
	if old.Revision > 0 {
		if err := w.b.Delete(changeKey(m.Conversation, old.Revision, m.MsgID), nil); err != nil {
			return err
		}
	}
	if m.Revision > 0 {
		return w.set(changeKey(m.Conversation, m.Revision, m.MsgID), nil)
	}
	return nil
}

// save writes msgs: a message whose msgid or message id is taken is
// skipped; a client message id is kept by the first message that uses
// it.
func (w *write) save(msgs []domain.Message, fromLog bool) error {
	for _, m := range msgs {
		key, id := messageKey(m.Conversation, m.MsgID), idKey(m.ID)
		ck := clientIndexKey(m.Sender.Account, m.ClientMsgID)
		ok, claimed, err := w.fresh(m, key, id, ck, fromLog)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if floor, err := w.floor(m.Conversation); err != nil {
			return err
		} else if m.MsgID <= floor {
			continue // removed by the retention: a replay does not bring it back
		}
		at := pointer(m.Conversation, m.MsgID)
		if err := w.put(key, domain.Message{}, m); err != nil {
			return err
		}
		w.filters.ids.Add(id) // before the batch commits
		if err := w.set(id, at); err != nil {
			return err
		}
		if !claimed {
			if err := w.setClaim(ck, at); err != nil {
				return err
			}
		}
	}
	return nil
}

// fresh reports whether m, at key with its message id's key id and its
// client message id's key ck, is new to the store, and whether ck is
// claimed already.
//
// fromLog says m comes from the log past the store's own progress: its
// msgid is an offset of the log, never applied before, so only the
// message id and the client message id need checking, and while the
// store holds no floor one lookup, of ck, answers both. A message id is
// minted for one send, so every record of it in the log has the same
// account and client message id; every message saved claims its client
// message id unless it is claimed already, and only the retention removes
// a claim (Remove). So with no floor, an unclaimed ck means an untaken
// message id. Otherwise — ck claimed (a retry, or another message with
// the same client message id), a store with a floor, or a Save, whose
// messages may be anything — the message id, and for a Save the msgid,
// are looked up too.
func (w *write) fresh(m domain.Message, key, id, ck []byte, fromLog bool) (ok, claimed bool, err error) {
	if claimed, err = w.taken(w.answering.clients, ck); err != nil {
		return false, false, err
	}
	if fromLog && !claimed && !w.floored {
		return true, false, nil
	}
	if !fromLog {
		if taken, err := w.taken(nil, key); err != nil || taken {
			return false, claimed, err
		}
	}
	taken, err := w.taken(w.answering.ids, id)
	return !taken && err == nil, claimed, err
}

// amend applies changes to the messages they name, as this batch left them.
func (w *write) amend(changes []domain.Amendment) error {
	for _, a := range changes {
		key := messageKey(a.Conversation, a.MsgID)
		m, ok := w.msgs[string(key)]
		if !ok {
			raw, found, err := w.look.Get(key)
			if err != nil {
				return err
			}
			if !found {
				continue
			}
			if m, err = decodeMessage(a.Conversation, a.MsgID, raw); err != nil {
				return err
			}
		}
		changed, ok := a.Apply(m)
		if !ok {
			continue
		}
		if err := w.put(key, m, changed); err != nil {
			return err
		}
		if !a.Delete {
			if err := w.claim(a.By.Account, a.ClientMsgID, pointer(a.Conversation, a.MsgID)); err != nil {
				return err
			}
		}
	}
	return nil
}

// erase tombstones the messages e covers in the conversations in accepts,
// as this batch left them. It walks the history's keys, skipping each
// conversation in accepts not with one seek, and decodes only the
// messages of those it does: an erasure reads the keys of the whole
// history, once per partition.
func (w *write) erase(e domain.Erasure, in func(domain.ConversationID) bool) error {
	it, err := pebblekv.Prefix(w.db, []byte("m/"))
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; {
		k := it.Key()
		if len(k) < len("m/")+1+8 {
			return fmt.Errorf("corrupt history key %q", k)
		}
		c, err := domain.ParseConversationID(string(k[2 : len(k)-9]))
		if err != nil {
			return fmt.Errorf("corrupt history key %q: %w", k, err)
		}
		if !in(c) {
			// msgids are positive, so no key of c sorts after prefix+0xff.
			ok = it.SeekGE(append(convPrefix(c), 0xff))
			continue
		}
		id := domain.MsgID(binary.BigEndian.Uint64(k[len(k)-8:]))
		m, found := w.msgs[string(k)]
		if !found {
			v, err := it.ValueAndErr()
			if err != nil {
				return err
			}
			if m, err = decodeMessage(c, id, v); err != nil {
				return err
			}
		}
		if erased, changed := e.Apply(m); changed {
			if err := w.put(append([]byte(nil), k...), m, erased); err != nil {
				return err
			}
		}
		ok = it.Next()
	}
	if err := it.Error(); err != nil {
		return err
	}
	// Messages this batch wrote are not in the snapshot being walked.
	for k, m := range w.msgs {
		if !in(m.Conversation) {
			continue
		}
		if erased, changed := e.Apply(m); changed {
			if err := w.put([]byte(k), m, erased); err != nil {
				return err
			}
		}
	}
	return nil
}

// Erase implements Store.
func (s *Pebble) Erase(_ context.Context, e domain.Erasure, in func(domain.ConversationID) bool) error {
	return s.commit(func(w *write) error { return w.erase(e, in) })
}

// Save implements Store.
func (s *Pebble) Save(_ context.Context, msgs ...domain.Message) error {
	return s.commit(func(w *write) error { return w.save(msgs, false) })
}

// Amend implements Store.
func (s *Pebble) Amend(_ context.Context, changes ...domain.Amendment) error {
	return s.commit(func(w *write) error { return w.amend(changes) })
}

func (s *Pebble) commit(f func(*write) error) error {
	b := s.db.NewBatch()
	defer b.Close()
	w, err := s.newWrite(b)
	if err != nil {
		return err
	}
	defer w.close()
	if err := f(w); err != nil {
		return err
	}
	return b.Commit(pebble.NoSync)
}

// ApplyBatch implements projections.Batcher: the batch's messages and
// changes, in log order, and the progress through its last record commit
// together. No fsync: the log is the record of truth, and after a crash of
// the machine the store resumes from what its own progress says it holds.
func (s *Pebble) ApplyBatch(_ context.Context, recs []projections.Record) error {
	b := s.db.NewBatch()
	defer b.Close()
	w, err := s.newWrite(b)
	if err != nil {
		return err
	}
	defer w.close()
	err = projections.Runs(recs, func(msgs []domain.Message) error { return w.save(msgs, true) }, w.amend, w.erase)
	if err != nil {
		return err
	}
	// A message the history holds is skipped: the progress of a batch of
	// messages may wait.
	if err := s.marks.CommitThrough(b, recs); err != nil {
		return fmt.Errorf("cannot write the history: %w", err)
	}
	return nil
}

// Message implements Store.
func (s *Pebble) Message(_ context.Context, conv domain.ConversationID, id domain.MsgID) (domain.Message, bool, error) {
	raw, ok, err := pebblekv.Get(s.db, messageKey(conv, id))
	if err != nil || !ok {
		return domain.Message{}, false, err
	}
	m, err := decodeMessage(conv, id, raw)
	return m, err == nil, err
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

// Changes implements Store: a range scan of conv's change index from
// revision after+1, skipping the changes to messages after after.
func (s *Pebble) Changes(_ context.Context, conv domain.ConversationID, after domain.MsgID, limit int) ([]domain.Message, bool, error) {
	prefix := changesPrefix(conv)
	upper := append([]byte(nil), prefix...)
	upper[len(upper)-1]++
	look, err := pebblekv.NewLookup(s.db)
	if err != nil {
		return nil, false, err
	}
	defer look.Close()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: changeKey(conv, after+1, 0), UpperBound: upper})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	var out []domain.Message
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != len(prefix)+16 {
			return nil, false, fmt.Errorf("corrupt change key %q", k)
		}
		id := domain.MsgID(binary.BigEndian.Uint64(k[len(k)-8:]))
		if id > after {
			continue
		}
		if len(out) == limit {
			return out, true, nil
		}
		raw, ok, err := look.Get(messageKey(conv, id))
		if err != nil {
			return nil, false, err
		}
		if !ok {
			continue
		}
		m, err := decodeMessage(conv, id, raw)
		if err != nil {
			return nil, false, err
		}
		out = append(out, m)
	}
	return out, false, it.Error()
}

// ByClientMsgID implements Store.
func (s *Pebble) ByClientMsgID(_ context.Context, account domain.AccountID, clientMsgID string) (domain.Message, bool, error) {
	ck := clientIndexKey(account, clientMsgID)
	if s.filters.clients.Absent(ck) {
		return domain.Message{}, false, nil
	}
	look, err := pebblekv.NewLookup(s.db)
	if err != nil {
		return domain.Message{}, false, err
	}
	defer look.Close()
	v, ok, err := look.Get(ck)
	if err != nil || !ok {
		return domain.Message{}, false, err
	}
	conv, id, err := readPointer(v)
	if err != nil {
		return domain.Message{}, false, err
	}
	raw, ok, err := look.Get(messageKey(conv, id))
	if err != nil {
		return domain.Message{}, false, fmt.Errorf("cannot read message %s/%d: %w", conv, id, err)
	}
	if !ok {
		// The retention removed the message: its own id went with it, but
		// not the ids of its edits, which name nothing now.
		return domain.Message{}, false, nil
	}
	m, err := decodeMessage(conv, id, raw)
	return m, err == nil, err
}

// Apply implements projections.Projection: a batch of one.
func (s *Pebble) Apply(ctx context.Context, r projections.Record) error {
	return s.ApplyBatch(ctx, []projections.Record{r})
}
