package conversations

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/internal/pebblekv"
	"github.com/parley-chat/parley/projections/progress"
)

// Pebble keeps the index in the embedded store, with the projection's
// progress committed in the same batch. Keys (layout 2, see UpgradePebble):
//
//	cl/<conversation>                       latest msgid, time, message count (8 + 8 + 8 bytes)
//	ca/<account>/<conversation>             a direct conversation of the account
//	cc/<conversation>/m/<msgid>             the message's place in the conversation (8 bytes)
//	cc/<conversation>/r/<account>           the account's cursor (see reads.go; 4 × 8 bytes)
//	cc/<conversation>/s/<account>/<msgid>   the message's place among its sender's (8 bytes)
//
// msgids in keys are 8 bytes big-endian, so that they sort. An entry of cl/
// written before counts existed has 16 bytes and counts from zero. A
// message's keys under cc/ are neighbours, and a batch writes them in
// order: the memtable finds the place of each after the first near the
// one before, instead of descending its skiplist again from the top.
type Pebble struct {
	db    *pebble.DB
	marks *progress.PebbleMarks
	// states are the conversations the index holds a state of (cl/
	// keys): a new conversation's state — nearly every message's with
	// random peers — is known to be absent without a read of the store
	// once LoadFilter has read it. States are never deleted, and only the
	// index's batches write them, a conversation's one after another: so a
	// batch may trust an absent state for the snapshot it opens after
	// asking (nothing else writes that state in between), as a reader of
	// the store as it is may.
	states *pebblekv.Filter

	mu sync.Mutex
	// heldConvs and heldCursors are states and cursors as they are in the
	// store: what the index's batches (and LatestPrimed) last read or
	// wrote of them, a state the store does not have included. A batch
	// reads them here instead of in the store: a conversation people talk
	// in costs no lookup of its state nor of its sender's cursor, and a
	// new one's state, which the predecessors looked up, is not looked up
	// again. They stay true because only this index writes these keys
	// (and never deletes a state), a batch puts what it wrote only once it
	// is committed, and batches of one conversation (of one partition)
	// come one after another; an erasure, which deletes cursors, forgets
	// every held cursor.
	heldConvs   *memo[heldConv]
	heldCursors *memo[cursor]
}

// heldConv is a conversation's state as the store holds it (its time in
// milliseconds), or that the store has none.
type heldConv struct {
	latest domain.MsgID
	ms     int64
	count  int64
	found  bool
}

func holding(s convState, found bool) heldConv {
	return heldConv{latest: s.Latest, ms: s.Time.UnixMilli(), count: s.Count, found: found}
}

// state is the state held; the zero state when the store has none.
func (h heldConv) state() convState {
	if !h.found {
		return convState{}
	}
	return convState{Latest: h.latest, Time: time.UnixMilli(h.ms), Count: h.count}
}

// maxHeld bounds each generation of heldConvs and heldCursors: past it,
// the older one is dropped, which costs only the reads it would have
// saved. Each memo holds up to about 10 MiB, none of it for the
// collector to scan (a heap profile at 5,000 sends/s, random peers).
const maxHeld = 1 << 15

var _ Index = (*Pebble)(nil)

// NewPebble returns the index of db; progressName is the name under which
// the projection's progress is kept.
func NewPebble(db *pebble.DB, progressName string) *Pebble {
	return &Pebble{db: db, marks: progress.NewPebbleMarks(db, progressName), states: pebblekv.NewFilter("cl/", 0),
		heldConvs: newMemo[heldConv](maxHeld), heldCursors: newMemo[cursor](maxHeld)}
}

// LoadFilter reads the conversations the index holds into memory (1.5
// to 3 bytes each, at most pebblekv.DefaultFilterBytes), so that a new
// conversation's state is not looked up in the store. Until it returns,
// lookups read the store. Run it once, in the background, before ctx
// ends; the store must stay open until it returns.
func (p *Pebble) LoadFilter(ctx context.Context) error { return p.states.Load(ctx, p.db) }

// KeepFilter is LoadFilter, then builds the filter again from what the
// index holds each time it outgrows its bound (pebblekv.Filter.Keep),
// until ctx ends. If the filter stops for good (pebblekv.ErrOff, or a
// failed load), it is reported to stopped as it stops. Run it once, in
// the background; the store must stay open until it returns.
func (p *Pebble) KeepFilter(ctx context.Context, stopped func(kind string, err error)) {
	if err := p.states.Keep(ctx, p.db); err != nil && !errors.Is(err, ctx.Err()) {
		stopped("conversations", err)
	}
}

// Filters calls report with the filter of LoadFilter, by the kind of
// key it holds: whether it answers, and the memory it takes.
func (p *Pebble) Filters(report func(kind string, loaded bool, bytes int64)) {
	report("conversations", p.states.Loaded(), p.states.Bytes())
}

func latestKey(c domain.ConversationID) []byte { return []byte("cl/" + c.String()) }

// appendConvKey appends the prefix of conversation c's keys of kind (m,
// r or s) under cc/: "cc/<c>/<kind>/".
func appendConvKey(b []byte, c string, kind byte) []byte {
	b = append(b, "cc/"...)
	b = append(b, c...)
	return append(b, '/', kind, '/')
}

func appendCursorKey(b []byte, c string, a domain.AccountID) []byte {
	return append(appendConvKey(b, c, 'r'), a...)
}

func appendSentPrefix(b []byte, c string, a domain.AccountID) []byte {
	return append(append(appendConvKey(b, c, 's'), a...), '/')
}

func cursorKeyOf(c domain.ConversationID, a domain.AccountID) []byte {
	return appendCursorKey(nil, c.String(), a)
}

func seqPrefix(c domain.ConversationID) []byte { return appendConvKey(nil, c.String(), 'm') }

func sentPrefix(c domain.ConversationID, a domain.AccountID) []byte {
	return appendSentPrefix(nil, c.String(), a)
}

func withMsgID(prefix []byte, id domain.MsgID) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), uint64(id))
}

func encodeConv(s convState) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(s.Latest))
	b = binary.BigEndian.AppendUint64(b, uint64(s.Time.UnixMilli()))
	return binary.BigEndian.AppendUint64(b, uint64(s.Count))
}

func decodeConv(v []byte) (convState, error) {
	if len(v) != 16 && len(v) != 24 {
		return convState{}, errors.New("corrupt conversation index entry")
	}
	s := convState{Latest: domain.MsgID(binary.BigEndian.Uint64(v)), Time: time.UnixMilli(int64(binary.BigEndian.Uint64(v[8:])))}
	if len(v) == 24 {
		s.Count = int64(binary.BigEndian.Uint64(v[16:]))
	}
	return s, nil
}

func encodeCursor(c cursor) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(c.ReadMsgID))
	b = binary.BigEndian.AppendUint64(b, uint64(c.ReadSeq))
	b = binary.BigEndian.AppendUint64(b, uint64(c.Sent))
	return binary.BigEndian.AppendUint64(b, uint64(c.SentAtRead))
}

func decodeCursor(v []byte) (cursor, error) {
	if len(v) != 32 {
		return cursor{}, errors.New("corrupt read cursor")
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(v[8*i:]) }
	return cursor{ReadMsgID: domain.MsgID(u(0)), ReadSeq: int64(u(1)), Sent: int64(u(2)), SentAtRead: int64(u(3))}, nil
}

// pebbleBacking reads the store as it was before the batch. It opens its
// snapshot at the first read, not with the batch: most batches of a
// single node read nothing (a new conversation's state is held from
// LatestPrimed and it has no cursors to read), and the snapshot and its
// iterator were a good part of such a batch's cost. Opened later, it still sees the index as it
// was before the batch: only this batch writes the keys of its
// partition's conversations, and it commits after its last read.
type pebbleBacking struct {
	p    *Pebble
	snap *pebble.Snapshot
	look *pebblekv.Lookup
}

// open opens the snapshot and its lookup, once.
func (b *pebbleBacking) open() error {
	if b.look != nil {
		return nil
	}
	snap := b.p.db.NewSnapshot()
	look, err := pebblekv.NewLookup(snap)
	if err != nil {
		return errors.Join(err, snap.Close())
	}
	b.snap, b.look = snap, look
	return nil
}

// close releases what open opened.
func (b *pebbleBacking) close() {
	if b.look != nil {
		_ = b.look.Close()
		_ = b.snap.Close()
	}
}

func (b *pebbleBacking) get(key []byte) ([]byte, bool, error) {
	if err := b.open(); err != nil {
		return nil, false, err
	}
	return b.look.Get(key)
}

func (b *pebbleBacking) conv(c domain.ConversationID) (convState, bool, error) {
	if h, ok := b.p.heldConv(c); ok {
		return h.state(), h.found, nil
	}
	s, ok, err := b.p.readConv(c, b.get)
	if err != nil {
		return convState{}, false, err
	}
	b.p.holdConv(c, holding(s, ok))
	return s, ok, nil
}

// readConv is c's state, read with get (from the store or a snapshot of
// it) unless the filter knows the index has none; ok is false when it
// has none.
func (p *Pebble) readConv(c domain.ConversationID, get func([]byte) ([]byte, bool, error)) (s convState, ok bool, err error) {
	k := latestKey(c)
	if p.states.Absent(k) {
		return convState{}, false, nil
	}
	v, ok, err := get(k)
	if err != nil || !ok {
		return convState{}, false, err
	}
	if s, err = decodeConv(v); err != nil {
		return convState{}, false, err
	}
	return s, true, nil
}

func (b *pebbleBacking) cursor(c domain.ConversationID, a domain.AccountID) (cursor, bool, error) {
	k := cursorKey{c, a}
	if s, ok := b.p.heldCursor(k); ok {
		return s, true, nil
	}
	v, ok, err := b.get(cursorKeyOf(c, a))
	if err != nil || !ok {
		return cursor{}, false, err
	}
	s, err := decodeCursor(v)
	if err != nil {
		return cursor{}, false, err
	}
	b.p.holdCursor(k, s)
	return s, true, nil
}

func (p *Pebble) heldConv(c domain.ConversationID) (heldConv, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.heldConvs.get(c.String(), "")
}

func (p *Pebble) heldCursor(k cursorKey) (cursor, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.heldCursors.get(k.c.String(), string(k.a))
}

// holdConv keeps c's state h, as the store holds it now.
func (p *Pebble) holdConv(c domain.ConversationID, h heldConv) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.heldConvs.put(c.String(), "", h)
}

// holdCursor keeps cursor s of k, as the store holds it now.
func (p *Pebble) holdCursor(k cursorKey, s cursor) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.heldCursors.put(k.c.String(), string(k.a), s)
}

// hold keeps what t wrote, once it is committed.
func (p *Pebble) hold(t *tally) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range t.dirtyConvs {
		p.heldConvs.put(c.String(), "", holding(*t.convs[c], true))
	}
	for _, k := range t.dirtyCursors {
		p.heldCursors.put(k.c.String(), string(k.a), *t.cursors[k])
	}
}

// forget drops what is held of cs and ks: a batch that wrote them failed,
// and the store may or may not hold what it wrote.
func (p *Pebble) forget(cs []domain.ConversationID, ks []cursorKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.heldConvs.drop(c.String(), "")
	}
	for _, k := range ks {
		p.heldCursors.drop(k.c.String(), string(k.a))
	}
}

func (b *pebbleBacking) seqAt(c domain.ConversationID, at domain.MsgID) (int64, error) {
	if err := b.open(); err != nil {
		return 0, err
	}
	return lastUnder(b.snap, seqPrefix(c), at)
}

func (b *pebbleBacking) sentAt(c domain.ConversationID, a domain.AccountID, at domain.MsgID) (int64, error) {
	if err := b.open(); err != nil {
		return 0, err
	}
	return lastUnder(b.snap, sentPrefix(c, a), at)
}

// lastUnder is the value of the last key under prefix whose msgid is at
// most at, 0 when there is none: one seek.
func lastUnder(r pebble.Reader, prefix []byte, at domain.MsgID) (int64, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: withMsgID(prefix, at+1)})
	if err != nil {
		return 0, err
	}
	var n int64
	if it.Last() {
		if v := it.Value(); len(v) == 8 {
			n = int64(binary.BigEndian.Uint64(v))
		} else {
			err = errors.New("corrupt message count")
		}
	}
	return n, errors.Join(err, it.Error(), it.Close())
}

// applyBatch applies recs, which hold no erasure, in one batch, and holds
// what it wrote once it is committed.
func (p *Pebble) applyBatch(_ context.Context, recs []projections.Record) error {
	back := &pebbleBacking{p: p}
	defer back.close()
	t := newTally(back)
	defer t.release()
	if err := t.apply(recs); err != nil {
		return err
	}
	if err := p.write(t, recs); err != nil {
		p.forget(t.dirtyConvs, t.dirtyCursors)
		return err
	}
	p.hold(t)
	return nil
}

// ccWrites are a batch's writes under cc/, their keys in one buffer, so
// that they can be set in key order without an allocation each.
type ccWrites struct {
	keys []byte
	ws   []ccWrite
}

// ccWrite is a key, keys[from:to], and its value (8 or 32 bytes).
type ccWrite struct {
	from, to int
	n        int
	val      [32]byte
}

// add adds the key appended to w.keys since from, with its value.
func (w *ccWrites) add(from int, val []byte) {
	e := ccWrite{from: from, to: len(w.keys), n: len(val)}
	copy(e.val[:], val)
	w.ws = append(w.ws, e)
}

// set sets the writes in b in key order.
func (w *ccWrites) set(b *pebble.Batch) error {
	slices.SortFunc(w.ws, func(x, y ccWrite) int { return bytes.Compare(w.keys[x.from:x.to], w.keys[y.from:y.to]) })
	for i := range w.ws {
		e := &w.ws[i]
		if err := b.Set(w.keys[e.from:e.to], e.val[:e.n], nil); err != nil {
			return err
		}
	}
	return nil
}

// write commits what t changed, with the progress through recs.
func (p *Pebble) write(t *tally, recs []projections.Record) error {
	p.states.BeginWrite()
	defer p.states.EndWrite()
	b := p.db.NewBatch()
	defer b.Close()
	for _, c := range t.dirtyConvs {
		k := latestKey(c)
		if t.fresh[c] {
			p.states.Add(k) // before the batch commits
		}
		if err := b.Set(k, encodeConv(*t.convs[c]), nil); err != nil {
			return err
		}
		if !t.fresh[c] {
			continue // the accounts' entries came with the first message
		}
		for _, a := range participants(c) {
			if err := b.Set([]byte("ca/"+string(a)+"/"+c.String()), nil, nil); err != nil {
				return err
			}
		}
	}
	var cc ccWrites
	cc.ws = make([]ccWrite, 0, len(t.dirtyCursors)+2*len(t.added))
	for _, k := range t.dirtyCursors {
		from := len(cc.keys)
		cc.keys = appendCursorKey(cc.keys, k.c.String(), k.a)
		cc.add(from, encodeCursor(*t.cursors[k]))
	}
	var val [8]byte
	for _, a := range t.added {
		c, id := a.Conversation.String(), uint64(a.MsgID)
		from := len(cc.keys)
		cc.keys = binary.BigEndian.AppendUint64(appendConvKey(cc.keys, c, 'm'), id)
		cc.add(from, binary.BigEndian.AppendUint64(val[:0], uint64(a.Seq)))
		from = len(cc.keys)
		cc.keys = binary.BigEndian.AppendUint64(appendSentPrefix(cc.keys, c, a.Sender), id)
		cc.add(from, binary.BigEndian.AppendUint64(val[:0], uint64(a.SenderSeq)))
	}
	if err := cc.set(b); err != nil {
		return err
	}
	// A message the conversation holds is counted once: the progress of a
	// batch of messages may wait.
	if err := p.marks.CommitThrough(b, recs); err != nil {
		return fmt.Errorf("cannot write the conversation index: %w", err)
	}
	return nil
}

// List implements Index.
func (p *Pebble) List(_ context.Context, account domain.AccountID, groups []domain.GroupID, q Query) (Page, error) {
	snap := p.db.NewSnapshot()
	defer snap.Close()
	prefix := "ca/" + string(account) + "/"
	it, err := pebblekv.Prefix(snap, []byte(prefix))
	if err != nil {
		return Page{}, err
	}
	var convs []domain.ConversationID
	for it.First(); it.Valid(); it.Next() {
		c, err := domain.ParseConversationID(string(it.Key()[len(prefix):]))
		if err == nil {
			convs = append(convs, c)
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return Page{}, err
	}
	for _, g := range groups {
		convs = append(convs, domain.GroupConversation(g))
	}
	var out []Latest
	empty := 0
	for _, c := range convs {
		key := latestKey(c)
		if p.states.Absent(key) {
			empty++ // a group without a message: known from memory
			continue
		}
		v, closer, err := snap.Get(key)
		if errors.Is(err, pebble.ErrNotFound) {
			empty++
			continue
		}
		if err != nil {
			return Page{}, err
		}
		st, err := decodeConv(v)
		_ = closer.Close()
		if err != nil {
			return Page{}, err
		}
		cur, err := readCursor(snap, c, account)
		if err != nil {
			return Page{}, err
		}
		out = append(out, Latest{Conversation: c, MsgID: st.Latest, Time: st.Time, ReadMsgID: cur.ReadMsgID, Unread: cur.unread(st.Count)})
	}
	return newestFirst(out, q, empty), nil
}

// Apply implements projections.Projection: a batch of one.
func (p *Pebble) Apply(ctx context.Context, r projections.Record) error {
	return p.ApplyBatch(ctx, []projections.Record{r})
}

// LatestPrimed is LatestOf for the reader that applies this index: what
// it reads is held (heldConvs) for the index's next batch of c, which so
// reads it once rather than twice (the predecessors, earlier in the
// reader, ask about every conversation they do not remember). Only the
// reader's own specs may call it.
func (p *Pebble) LatestPrimed(_ context.Context, c domain.ConversationID) (domain.MsgID, bool, error) {
	if h, ok := p.heldConv(c); ok {
		return h.latest, h.found, nil
	}
	st, ok, err := p.readConv(c, p.dbGet)
	if err != nil {
		return 0, false, err
	}
	p.holdConv(c, holding(st, ok))
	return st.Latest, ok, nil
}

// LatestOf is conversation c's latest message in the index; ok is false
// when it has none.
func (p *Pebble) LatestOf(_ context.Context, c domain.ConversationID) (domain.MsgID, bool, error) {
	st, ok, err := p.readConv(c, p.dbGet)
	return st.Latest, ok, err
}

// dbGet reads a key of the store as it is.
func (p *Pebble) dbGet(key []byte) ([]byte, bool, error) { return pebblekv.Get(p.db, key) }

func readCursor(r pebble.Reader, c domain.ConversationID, a domain.AccountID) (cursor, error) {
	v, ok, err := pebblekv.Get(r, cursorKeyOf(c, a))
	if err != nil || !ok {
		return cursor{}, err
	}
	return decodeCursor(v)
}

// ReadState implements Reads.
func (p *Pebble) ReadState(_ context.Context, c domain.ConversationID, account domain.AccountID) (ReadState, error) {
	snap := p.db.NewSnapshot()
	defer snap.Close()
	st, _, err := p.readConv(c, func(k []byte) ([]byte, bool, error) { return pebblekv.Get(snap, k) })
	if err != nil {
		return ReadState{}, err
	}
	cur, err := readCursor(snap, c, account)
	if err != nil {
		return ReadState{}, err
	}
	return ReadState{Latest: st.Latest, ReadMsgID: cur.ReadMsgID, Unread: cur.unread(st.Count)}, nil
}

// ReadMsgIDs implements Reads.
func (p *Pebble) ReadMsgIDs(_ context.Context, c domain.ConversationID, accounts []domain.AccountID) ([]domain.MsgID, error) {
	snap := p.db.NewSnapshot()
	defer snap.Close()
	look, err := pebblekv.NewLookup(snap)
	if err != nil {
		return nil, err
	}
	defer look.Close()
	out := make([]domain.MsgID, len(accounts))
	for i, a := range accounts {
		v, ok, err := look.Get(cursorKeyOf(c, a))
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		cur, err := decodeCursor(v)
		if err != nil {
			return nil, err
		}
		out[i] = cur.ReadMsgID
	}
	return out, nil
}

// ApplyBatch implements projections.Batcher: the records between
// erasures as one batch each, and each erasure after the records before
// it.
func (p *Pebble) ApplyBatch(ctx context.Context, recs []projections.Record) error {
	return eraseRuns(ctx, recs, p.applyBatch, p.erase)
}

// erase drops a's cursors (but for what it sent: cursor.erased): a walk of
// every conversation under cc/,
// one seek to a's cursor and one past the conversation's keys each, which
// erasures, being rare, can afford.
func (p *Pebble) erase(_ context.Context, a domain.AccountID, in func(domain.ConversationID) bool, pos events.Position) error {
	it, err := pebblekv.Prefix(p.db, []byte("cc/"))
	if err != nil {
		return err
	}
	b := p.db.NewBatch()
	defer b.Close()
	for valid := it.First(); valid; {
		conv, _, ok := bytes.Cut(it.Key()[len("cc/"):], []byte("/"))
		if !ok {
			valid = it.Next()
			continue
		}
		// Past the conversation's keys ('0' follows '/'), made before a
		// seek reuses the memory of the key that conv is part of.
		next := []byte("cc/" + string(conv) + "0")
		c, err := domain.ParseConversationID(string(conv))
		if err == nil && in(c) {
			k := cursorKeyOf(c, a)
			if it.SeekGE(k) && bytes.Equal(it.Key(), k) {
				cur, err := decodeCursor(it.Value())
				if err == nil {
					if left := cur.erased(); left != (cursor{}) {
						err = b.Set(k, encodeCursor(left), nil)
					} else {
						err = b.Delete(k, nil)
					}
				}
				if err != nil {
					_ = it.Close()
					return err
				}
			}
		}
		valid = it.SeekGE(next)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	// Held cursors of a may be deleted now, or not if the commit fails:
	// forgotten either way.
	defer func() {
		p.mu.Lock()
		p.heldCursors.reset()
		p.mu.Unlock()
	}()
	return p.marks.Commit(b, pos.Partition, pos.Offset+1)
}
