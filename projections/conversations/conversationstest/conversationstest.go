// Package conversationstest is the contract every conversation index
// passes: memory, the embedded store (Pebble) and PostgreSQL list the same
// conversations after the same records.
package conversationstest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/conversations"
)

// Open returns a new, empty index for one case: a projections.Batcher or a
// projections.Projection as well as a conversations.Index.
type Open func(t *testing.T) conversations.Index

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// offsets numbers the records each case applies.
var offsets int64

// sent is a MessageSent record in conv at msgid, sent min minutes after t0.
func sent(conv string, msgid domain.MsgID, min int) projections.Record {
	from := "alice"
	if c, err := domain.ParseConversationID(conv); err == nil && c.Kind() == domain.KindDirect {
		a, _ := c.Accounts()
		from = string(a)
	}
	offsets++
	return projections.Record{
		Event: events.MessageSent{
			MessageID: uuid.NewString(), ClientMsgID: uuid.NewString(), Conversation: conv,
			SenderAccount: from, SenderDevice: "phone", Kind: "text", Body: "x",
			ServerTime: t0.Add(time.Duration(min) * time.Minute).UnixMilli(),
		},
		MsgID:    msgid,
		Position: events.Position{Offset: offsets},
	}
}

func latest(conv string, msgid domain.MsgID, min int) conversations.Latest {
	c, err := domain.ParseConversationID(conv)
	if err != nil {
		panic(err)
	}
	return conversations.Latest{Conversation: c, MsgID: msgid, Time: t0.Add(time.Duration(min) * time.Minute)}
}

// sameList compares lists by conversation, msgid and instant.
func sameList(got, want []conversations.Latest) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].Conversation != want[i].Conversation || got[i].MsgID != want[i].MsgID || !got[i].Time.Equal(want[i].Time) {
			return false
		}
	}
	return true
}

// apply hands recs to idx in batches of batch records (1: one by one).
func apply(t *testing.T, idx conversations.Index, batch int, recs ...projections.Record) error {
	t.Helper()
	ctx := context.Background()
	if b, ok := idx.(projections.Batcher); ok {
		for len(recs) > 0 {
			n := min(batch, len(recs))
			if err := b.ApplyBatch(ctx, recs[:n]); err != nil {
				return err
			}
			recs = recs[n:]
		}
		return nil
	}
	p := idx.(projections.Projection)
	var errs []error
	for _, r := range recs {
		if err := p.Apply(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func list(t *testing.T, idx conversations.Index, account domain.AccountID, groups []domain.GroupID, since time.Time, limit int) []conversations.Latest {
	t.Helper()
	got, err := idx.List(context.Background(), account, groups, conversations.Query{Since: since, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	return got.Entries
}

// Run runs the contract against indexes made by open.
func Run(t *testing.T, open Open) {
	t.Run("list", func(t *testing.T) {
		log := []projections.Record{
			sent("d:alice:bob", 10, 1),
			sent("d:alice:carol", 20, 5),
			sent("g:team", 30, 3),
			sent("d:bob:carol", 40, 9),  // not alice's
			sent("g:other", 50, 8),      // alice is not in it
			sent("d:alice:bob", 11, 7),  // newer message in an existing conversation
			sent("d:alice:dave", 60, 5), // same time as alice:carol
			sent("d:alice:alice", 70, 2),
		}
		tests := []struct {
			name    string
			account domain.AccountID
			groups  []domain.GroupID
			since   time.Time
			limit   int
			want    []conversations.Latest
		}{
			{
				name: "newest first, ties by conversation id", account: "alice", groups: []domain.GroupID{"team"}, limit: 100,
				want: []conversations.Latest{
					latest("d:alice:bob", 11, 7), latest("d:alice:carol", 20, 5), latest("d:alice:dave", 60, 5),
					latest("g:team", 30, 3), latest("d:alice:alice", 70, 2),
				},
			},
			{
				name: "limit", account: "alice", groups: []domain.GroupID{"team"}, limit: 2,
				want: []conversations.Latest{latest("d:alice:bob", 11, 7), latest("d:alice:carol", 20, 5)},
			},
			{
				name: "since is exclusive", account: "alice", groups: []domain.GroupID{"team"}, since: t0.Add(5 * time.Minute), limit: 100,
				want: []conversations.Latest{latest("d:alice:bob", 11, 7)},
			},
			{
				name: "since just before a message includes it", account: "alice", groups: []domain.GroupID{"team"}, since: t0.Add(3*time.Minute - time.Millisecond), limit: 100,
				want: []conversations.Latest{latest("d:alice:bob", 11, 7), latest("d:alice:carol", 20, 5), latest("d:alice:dave", 60, 5), latest("g:team", 30, 3)},
			},
			{
				name: "since after everything", account: "alice", groups: []domain.GroupID{"team"}, since: t0.Add(time.Hour), limit: 100,
			},
			{
				name: "groups come only from the caller", account: "alice", limit: 100,
				want: []conversations.Latest{
					latest("d:alice:bob", 11, 7), latest("d:alice:carol", 20, 5), latest("d:alice:dave", 60, 5), latest("d:alice:alice", 70, 2),
				},
			},
			{
				name: "the other side of a direct conversation sees it", account: "carol", limit: 100,
				want: []conversations.Latest{latest("d:bob:carol", 40, 9), latest("d:alice:carol", 20, 5)},
			},
			{
				name: "a group without messages is not listed", account: "erin", groups: []domain.GroupID{"silent"}, limit: 100,
			},
			{
				name: "limit zero", account: "alice", groups: []domain.GroupID{"team"}, limit: 0,
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				m := open(t)
				if err := apply(t, m, 3, log...); err != nil {
					t.Fatalf("Apply: %v", err)
				}
				got := list(t, m, tt.account, tt.groups, tt.since, tt.limit)
				if !sameList(got, tt.want) {
					t.Errorf("List =\n%v\nwant\n%v", got, tt.want)
				}
			})
		}
	})

	// A list longer than a page is walked with the last entry of each
	// page as the cursor, ties included; every page says what the list
	// looked at: all of the account's conversations.
	t.Run("pages", func(t *testing.T) {
		m := open(t)
		if err := apply(t, m, 3,
			sent("d:alice:bob", 10, 1), sent("d:alice:carol", 20, 5), sent("g:team", 30, 3),
			sent("d:bob:carol", 40, 9), sent("d:alice:bob", 11, 7), sent("d:alice:dave", 60, 5), sent("d:alice:alice", 70, 2)); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		want := [][]conversations.Latest{
			{latest("d:alice:bob", 11, 7), latest("d:alice:carol", 20, 5)},
			{latest("d:alice:dave", 60, 5), latest("g:team", 30, 3)},
			{latest("d:alice:alice", 70, 2)},
		}
		// "empty" has no message: not listed, and not counted.
		groups := []domain.GroupID{"team", "empty"}
		q := conversations.Query{Limit: 2}
		for i, w := range want {
			page, err := m.List(context.Background(), "alice", groups, q)
			if err != nil {
				t.Fatal(err)
			}
			if !sameList(page.Entries, w) || page.More != (i < len(want)-1) || page.Considered != 5 || page.EmptyGroups != 1 {
				t.Fatalf("page %d = %v (more %v, considered %d, empty groups %d)\nwant %v (more %v, considered 5, empty groups 1)",
					i, page.Entries, page.More, page.Considered, page.EmptyGroups, w, i < len(want)-1)
			}
			last := page.Entries[len(page.Entries)-1]
			q.After = conversations.Position{Time: last.Time, Conversation: last.Conversation}
		}
		// An empty page costs what a full one does.
		page, err := m.List(context.Background(), "alice", groups, conversations.Query{Since: t0.Add(time.Hour), Limit: 2})
		if err != nil || len(page.Entries) != 0 || page.More || page.Considered != 5 || page.EmptyGroups != 1 {
			t.Fatalf("an empty page = %+v, %v; want nothing, considered 5, one empty group", page, err)
		}
	})

	t.Run("applying is idempotent", func(t *testing.T) {
		log := []projections.Record{
			sent("d:alice:bob", 10, 1),
			sent("g:team", 30, 3),
			sent("d:alice:bob", 12, 4),
		}
		want := []conversations.Latest{latest("d:alice:bob", 12, 4), latest("g:team", 30, 3)}
		tests := []struct {
			name  string
			order []int
		}{
			{"once", []int{0, 1, 2}},
			{"each twice", []int{0, 0, 1, 1, 2, 2}},
			{"whole log twice", []int{0, 1, 2, 0, 1, 2}},
			{"older message after a newer one", []int{2, 1, 0}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				m := open(t)
				for _, i := range tt.order {
					if err := apply(t, m, 1, log[i]); err != nil {
						t.Fatal(err)
					}
				}
				if got := list(t, m, "alice", []domain.GroupID{"team"}, time.Time{}, 10); !sameList(got, want) {
					t.Errorf("List = %v, want %v", got, want)
				}
			})
		}
	})

	t.Run("other events are ignored and a bad message is skipped", func(t *testing.T) {
		m := open(t)
		bad := sent("d:alice:bob", 10, 1)
		e := bad.Event.(events.MessageSent)
		e.Conversation = "d:bob:alice"
		bad.Event = e
		_ = apply(t, m, 3, projections.Record{Event: events.GroupCreated{Group: "team", Owner: "alice"}}, bad, sent("g:team", 11, 2))
		if got := list(t, m, "alice", []domain.GroupID{"team"}, time.Time{}, 10); !sameList(got, []conversations.Latest{latest("g:team", 11, 2)}) {
			t.Errorf("List = %v, want only g:team", got)
		}
	})
}

// read is a ConversationRead record: account read conv up to msgid.
func read(conv, account string, msgid domain.MsgID) projections.Record {
	offsets++
	return projections.Record{
		Event:    events.ConversationRead{Conversation: conv, Account: account, Device: "phone", MsgID: int64(msgid), At: t0.UnixMilli()},
		Position: events.Position{Offset: offsets},
	}
}

// sentBy is a MessageSent record in conv at msgid from account.
func sentBy(conv, from string, msgid domain.MsgID) projections.Record {
	r := sent(conv, msgid, 1)
	e := r.Event.(events.MessageSent)
	e.SenderAccount = from
	r.Event = e
	return r
}

// model is the definition of cursors and unread counts, by scanning: what
// every index must agree with without scanning.
type model struct {
	msgs    map[string][]projections.Record
	cursors map[[2]string]domain.MsgID
}

func newModel(log []projections.Record) *model {
	m := &model{msgs: map[string][]projections.Record{}, cursors: map[[2]string]domain.MsgID{}}
	latest := map[string]domain.MsgID{}
	for _, r := range log {
		switch e := r.Event.(type) {
		case events.MessageSent:
			if r.MsgID > latest[e.Conversation] {
				latest[e.Conversation] = r.MsgID
				m.msgs[e.Conversation] = append(m.msgs[e.Conversation], r)
			}
		case events.ConversationRead:
			k := [2]string{e.Conversation, e.Account}
			if at := min(domain.MsgID(e.MsgID), latest[e.Conversation]); at > m.cursors[k] {
				m.cursors[k] = at
			}
		}
	}
	return m
}

func (m *model) state(conv, account string) conversations.ReadState {
	s := conversations.ReadState{ReadMsgID: m.cursors[[2]string{conv, account}]}
	for _, r := range m.msgs[conv] {
		s.Latest = r.MsgID
		if r.MsgID > s.ReadMsgID && r.Event.(events.MessageSent).SenderAccount != account {
			s.Unread++
		}
	}
	return s
}

func readState(t *testing.T, idx conversations.Index, conv, account string) conversations.ReadState {
	t.Helper()
	c, err := domain.ParseConversationID(conv)
	if err != nil {
		t.Fatal(err)
	}
	s, err := idx.ReadState(context.Background(), c, domain.AccountID(account))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// RunReads runs the contract of read cursors and unread counts.
func RunReads(t *testing.T, open Open) {
	dm, grp := "d:alice:bob", "g:team"
	accounts := []string{"alice", "bob", "carol"}
	check := func(t *testing.T, idx conversations.Index, log []projections.Record) {
		t.Helper()
		want := newModel(log)
		for _, conv := range []string{dm, grp} {
			for _, a := range accounts {
				if conv == dm && a == "carol" {
					continue
				}
				if got, w := readState(t, idx, conv, a), want.state(conv, a); got != w {
					t.Errorf("ReadState(%s, %s) = %+v, want %+v", conv, a, got, w)
				}
			}
		}
		for _, a := range []string{"alice", "bob"} {
			for _, l := range list(t, idx, domain.AccountID(a), []domain.GroupID{"team"}, time.Time{}, 10) {
				w := want.state(l.Conversation.String(), a)
				if l.ReadMsgID != w.ReadMsgID || l.Unread != w.Unread {
					t.Errorf("List(%s) entry %s: read %d unread %d, want read %d unread %d", a, l.Conversation, l.ReadMsgID, l.Unread, w.ReadMsgID, w.Unread)
				}
			}
		}
		c, _ := domain.ParseConversationID(grp)
		ids, err := idx.ReadMsgIDs(context.Background(), c, []domain.AccountID{"alice", "bob", "carol", "nobody"})
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range []string{"alice", "bob", "carol", "nobody"} {
			if w := want.cursors[[2]string{grp, a}]; ids[i] != w {
				t.Errorf("ReadMsgIDs(%s)[%s] = %d, want %d", grp, a, ids[i], w)
			}
		}
	}

	named := []struct {
		name string
		log  []projections.Record
	}{
		{"nothing read: every message of the others is unread", []projections.Record{
			sentBy(dm, "alice", 10), sentBy(dm, "bob", 11), sentBy(dm, "alice", 12),
			sentBy(grp, "alice", 20), sentBy(grp, "bob", 21), sentBy(grp, "carol", 22),
		}},
		{"read up to the newest", []projections.Record{
			sentBy(dm, "alice", 10), sentBy(dm, "alice", 12), read(dm, "bob", 12), sentBy(dm, "alice", 13),
		}},
		{"read up to an older message", []projections.Record{
			sentBy(grp, "alice", 20), sentBy(grp, "bob", 21), sentBy(grp, "alice", 22), sentBy(grp, "bob", 23), sentBy(grp, "carol", 24),
			read(grp, "bob", 22), read(grp, "carol", 21),
		}},
		{"read up to a msgid between messages", []projections.Record{
			sentBy(grp, "alice", 20), sentBy(grp, "bob", 30), sentBy(grp, "alice", 40), read(grp, "carol", 35), read(grp, "bob", 25),
		}},
		{"a cursor never moves back", []projections.Record{
			sentBy(dm, "alice", 10), sentBy(dm, "alice", 12), sentBy(dm, "alice", 14), read(dm, "bob", 14), read(dm, "bob", 10), read(dm, "bob", 12),
		}},
		{"a read past the newest stops at the newest", []projections.Record{
			sentBy(dm, "alice", 10), read(dm, "bob", 99), sentBy(dm, "alice", 50), sentBy(dm, "alice", 60),
		}},
		{"a read of a conversation without messages is nothing", []projections.Record{
			read(grp, "bob", 5), sentBy(grp, "alice", 20),
		}},
		{"own messages after the cursor are not unread", []projections.Record{
			sentBy(grp, "alice", 20), read(grp, "bob", 20), sentBy(grp, "bob", 21), sentBy(grp, "bob", 22), sentBy(grp, "alice", 23), sentBy(grp, "bob", 24),
			read(grp, "alice", 22),
		}},
	}
	for _, tt := range named {
		for _, batch := range []int{1, 3, 100} {
			t.Run(fmt.Sprintf("%s/batch %d", tt.name, batch), func(t *testing.T) {
				idx := open(t)
				if err := apply(t, idx, batch, tt.log...); err != nil {
					t.Fatal(err)
				}
				check(t, idx, tt.log)
			})
		}
	}

	t.Run("replaying the log changes nothing", func(t *testing.T) {
		log := named[2].log
		idx := open(t)
		if err := apply(t, idx, 2, log...); err != nil {
			t.Fatal(err)
		}
		if err := apply(t, idx, 100, log...); err != nil {
			t.Fatal(err)
		}
		if err := apply(t, idx, 1, log[3:]...); err != nil {
			t.Fatal(err)
		}
		check(t, idx, log)
	})

	t.Run("random traffic, split in random batches", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, uint64(len(accounts))))
		for round := range 4 {
			var log []projections.Record
			next := map[string]domain.MsgID{dm: 100, grp: 100}
			for range 150 {
				conv := dm
				if rng.IntN(2) == 0 {
					conv = grp
				}
				who := accounts[rng.IntN(2)]
				if conv == grp {
					who = accounts[rng.IntN(3)]
				}
				if rng.IntN(3) == 0 {
					log = append(log, read(conv, who, next[conv]-domain.MsgID(rng.IntN(40))))
					continue
				}
				next[conv] += domain.MsgID(1 + rng.IntN(3))
				log = append(log, sentBy(conv, who, next[conv]))
			}
			idx := open(t)
			for rest := log; len(rest) > 0; {
				n := min(1+rng.IntN(20), len(rest))
				if err := apply(t, idx, n, rest[:n]...); err != nil {
					t.Fatal(err)
				}
				rest = rest[n:]
			}
			t.Run(fmt.Sprint("round ", round), func(t *testing.T) { check(t, idx, log) })
		}
	})

	t.Run("partitions applied at once", func(t *testing.T) {
		// Each partition applies its batches in turn, as the runner does,
		// while the others apply theirs: an index may write batches of
		// several partitions together, and must count them apart.
		const parts = 8
		rng := rand.New(rand.NewPCG(2, parts))
		logs := make([][]projections.Record, parts)
		var all []projections.Record
		for p := range parts {
			conv := fmt.Sprintf("d:p%d:q%d", p, p)
			who := [2]string{fmt.Sprint("p", p), fmt.Sprint("q", p)}
			next := domain.MsgID(100)
			for i := range 40 {
				var r projections.Record
				if rng.IntN(4) == 0 {
					r = read(conv, who[rng.IntN(2)], next-domain.MsgID(rng.IntN(10)))
				} else {
					next += domain.MsgID(1 + rng.IntN(3))
					r = sentBy(conv, who[rng.IntN(2)], next)
				}
				r.Position = events.Position{Partition: int32(p), Offset: int64(i)}
				logs[p] = append(logs[p], r)
			}
			all = append(all, logs[p]...)
		}
		idx := open(t)
		var wg sync.WaitGroup
		errs := make([]error, parts)
		for p := range parts {
			wg.Go(func() { errs[p] = apply(t, idx, 1+p%3, logs[p]...) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		want := newModel(all)
		for p := range parts {
			conv := fmt.Sprintf("d:p%d:q%d", p, p)
			for _, a := range []string{fmt.Sprint("p", p), fmt.Sprint("q", p)} {
				if got, w := readState(t, idx, conv, a), want.state(conv, a); got != w {
					t.Errorf("ReadState(%s, %s) = %+v, want %+v", conv, a, got, w)
				}
				if l := list(t, idx, domain.AccountID(a), nil, time.Time{}, 10); len(l) != 1 || l[0].Unread != want.state(conv, a).Unread {
					t.Errorf("List(%s) = %+v, want %s alone with %d unread", a, l, conv, want.state(conv, a).Unread)
				}
			}
		}
	})

	t.Run("an erasure drops the read position, not what the account sent", func(t *testing.T) {
		idx := open(t)
		dm := "d:alice:bob"
		offsets++
		erased := projections.Record{Event: events.AccountErased{Account: "alice", ErasedAt: t0.UnixMilli(), Partitions: 1},
			Position: events.Position{Offset: offsets}}
		if err := apply(t, idx, 2, sentBy(dm, "alice", 10), sentBy(dm, "alice", 11), sentBy(dm, "bob", 12), read(dm, "alice", 12), erased); err != nil {
			t.Fatal(err)
		}
		// Unread counts what an account did not send (events.md), erased
		// or not: bob's one message, not alice's own two.
		if got := readState(t, idx, dm, "alice"); got != (conversations.ReadState{Latest: 12, Unread: 1}) {
			t.Errorf("alice after her erasure: %+v, want nothing read and 1 unread", got)
		}
		if err := apply(t, idx, 1, sentBy(dm, "alice", 13), sentBy(dm, "bob", 14)); err != nil {
			t.Fatal(err)
		}
		if got := readState(t, idx, dm, "alice"); got != (conversations.ReadState{Latest: 14, Unread: 2}) {
			t.Errorf("alice after more messages: %+v, want 2 unread", got)
		}
		if got := readState(t, idx, dm, "bob"); got != (conversations.ReadState{Latest: 14, Unread: 3}) {
			t.Errorf("bob: %+v, want alice's 3 unread", got)
		}
	})

	t.Run("a bad read is skipped", func(t *testing.T) {
		idx := open(t)
		bad := read(dm, "bob", 10)
		e := bad.Event.(events.ConversationRead)
		e.Account = "bo/b"
		bad.Event = e
		zero := read(dm, "bob", 0)
		_ = apply(t, idx, 3, sentBy(dm, "alice", 10), bad, zero)
		if got := readState(t, idx, dm, "bob"); got != (conversations.ReadState{Latest: 10, Unread: 1}) {
			t.Errorf("ReadState = %+v, want nothing read", got)
		}
	})
}
