package client

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/parley-chat/parley/transport/wire"
)

// Inbox is one device's copy of its conversations: every message it holds,
// per conversation in msgid order, with the cursor to sync from. A push
// whose prevMsgId is not the last msgid held reveals a gap, and the inbox
// syncs it; a message it already holds is ignored, so a device never shows
// one twice. Feed it every push — the device's own sends come back as
// pushes too, so they need no sync; call SyncAll after (re)connecting. Its
// syncs ask for the changes (edits, deletions, erasures) made while the
// device was away to the messages it holds, and apply them.
type Inbox struct {
	mu    sync.Mutex
	c     *Client
	since int64 // server time of the last full sync
	convs map[string]*thread
	// Gaps counts pushes that revealed a gap; Syncs counts sync pages read.
	Gaps, Syncs int
}

type thread struct {
	cursor wire.Cursor
	msgs   []wire.Message
	// read is the highest read receipt seen per account.
	read map[string]int64
	// gone is the last msgid the server's history retention removed, as
	// the last sync that reached below it said (0: none known).
	gone int64
}

// NewInbox returns an empty inbox reading through c.
func NewInbox(c *Client) *Inbox { return &Inbox{c: c, convs: map[string]*thread{}} }

// Use switches the inbox to a new connection after a reconnect.
func (in *Inbox) Use(c *Client) {
	in.mu.Lock()
	in.c = c
	in.mu.Unlock()
}

func (in *Inbox) thread(conv string) *thread {
	t := in.convs[conv]
	if t == nil {
		t = &thread{}
		in.convs[conv] = t
	}
	return t
}

// HandlePush applies a pushed message, syncing first if it reveals a gap,
// or a pushed edit or deletion of a message it holds.
func (in *Inbox) HandlePush(ctx context.Context, f wire.ServerFrame) error {
	if f.Type == wire.TypeReadPush {
		in.mu.Lock()
		t := in.thread(f.Conversation)
		if t.read == nil {
			t.read = map[string]int64{}
		}
		t.read[f.Account] = max(t.read[f.Account], f.MsgID)
		in.mu.Unlock()
		return nil
	}
	if f.Type == wire.TypeEdited || f.Type == wire.TypeDeleted {
		in.mu.Lock()
		in.thread(f.Conversation).applyChange(f)
		in.mu.Unlock()
		return nil
	}
	if f.Message == nil {
		return nil
	}
	m := *f.Message
	in.mu.Lock()
	t := in.thread(m.Conversation)
	last := t.cursor.LastMsgID
	switch {
	case m.MsgID <= last:
		in.mu.Unlock()
		return nil // held already
	case f.PrevMsgID == last:
		t.msgs = append(t.msgs, m)
		t.cursor.LastMsgID = m.MsgID
		in.mu.Unlock()
		return nil
	}
	in.Gaps++
	in.mu.Unlock()
	return in.Sync(ctx, m.Conversation)
}

// Sync reads conversation from the inbox's cursor until nothing remains,
// with the changes to the messages it holds; when the server has more
// changes than one reply lists, it re-reads what it holds.
func (in *Inbox) Sync(ctx context.Context, conv string) error {
	for {
		in.mu.Lock()
		c := in.c
		cur := in.thread(conv).cursor
		in.mu.Unlock()
		f, err := c.SyncChanges(ctx, conv, cur, 0)
		if err != nil {
			return fmt.Errorf("cannot sync %s: %w", conv, err)
		}
		if f.ChangesMore {
			if err := in.reread(ctx, conv, cur.LastMsgID); err != nil {
				return err
			}
		}
		in.mu.Lock()
		in.Syncs++
		t := in.thread(conv)
		for _, m := range f.Changes {
			t.replace(m)
		}
		if f.GoneThrough > t.cursor.LastMsgID {
			// Those messages are gone for good: move past them, or an empty
			// page with more after it would be asked for again and again.
			t.cursor.LastMsgID, t.gone = f.GoneThrough, f.GoneThrough
		}
		for _, m := range f.Messages {
			if m.MsgID > t.cursor.LastMsgID {
				t.msgs = append(t.msgs, m)
				t.cursor.LastMsgID = m.MsgID
			}
		}
		if f.Next != nil {
			t.cursor.LastTime = f.Next.LastTime
		}
		in.mu.Unlock()
		if !f.HasMore {
			return nil
		}
	}
}

// reread reads conv again from its start through msgid through, putting
// each message's latest form in place of the one held.
func (in *Inbox) reread(ctx context.Context, conv string, through int64) error {
	var cur wire.Cursor
	for cur.LastMsgID < through {
		in.mu.Lock()
		c := in.c
		in.mu.Unlock()
		f, err := c.Sync(ctx, conv, cur, 0)
		if err != nil {
			return fmt.Errorf("cannot re-read %s: %w", conv, err)
		}
		in.mu.Lock()
		in.Syncs++
		t := in.thread(conv)
		for _, m := range f.Messages {
			if m.MsgID <= through {
				t.replace(m)
			}
		}
		in.mu.Unlock()
		if !f.HasMore || f.Next == nil {
			return nil
		}
		cur = *f.Next
	}
	return nil
}

// SyncAll asks which conversations changed since the last SyncAll and syncs
// each of them, and every other conversation it holds for the changes to
// its messages (the conversation list does not show edits and deletions):
// one sync each.
func (in *Inbox) SyncAll(ctx context.Context) error {
	in.mu.Lock()
	c, since := in.c, in.since
	in.mu.Unlock()
	f, err := c.Do(ctx, wire.Request{Type: wire.TypeConversations, Since: since})
	if err != nil {
		return err
	}
	todo := map[string]bool{}
	in.mu.Lock()
	for _, conv := range f.Conversations {
		if conv.LatestMsgID > in.thread(conv.Conversation).cursor.LastMsgID {
			todo[conv.Conversation] = true
		}
	}
	for conv, t := range in.convs {
		if t.cursor.LastMsgID > 0 {
			todo[conv] = true
		}
	}
	in.mu.Unlock()
	for conv := range todo {
		if err := in.Sync(ctx, conv); err != nil {
			return err
		}
	}
	in.mu.Lock()
	// Step back a little so that a message stamped just before the list was
	// taken is listed again next time; holding it already costs nothing.
	if f.ServerTime-60_000 > in.since {
		in.since = f.ServerTime - 60_000
	}
	in.mu.Unlock()
	return nil
}

// GoneThrough is the last msgid of conv that the server's history
// retention removed before this inbox could read it, 0 if none: the
// messages the inbox holds below it, if any, the server no longer has.
func (in *Inbox) GoneThrough(conv string) int64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.thread(conv).gone
}

// Messages returns a copy of a conversation's messages in msgid order.
func (in *Inbox) Messages(conv string) []wire.Message {
	in.mu.Lock()
	defer in.mu.Unlock()
	t := in.convs[conv]
	if t == nil {
		return nil
	}
	out := append([]wire.Message(nil), t.msgs...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].MsgID < out[j].MsgID })
	return out
}

// Cursor returns where the inbox stands in conv.
func (in *Inbox) Cursor(conv string) wire.Cursor {
	in.mu.Lock()
	defer in.mu.Unlock()
	if t := in.convs[conv]; t != nil {
		return t.cursor
	}
	return wire.Cursor{}
}

// ReadBy is the highest msgid account has read in conv, as far as the read
// receipts pushed to this device tell (0: none seen). Receipts may come
// out of order after a reconnect; the inbox keeps the highest.
func (in *Inbox) ReadBy(conv, account string) int64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	if t := in.convs[conv]; t != nil {
		return t.read[account]
	}
	return 0
}
