// Package push is the push projection: it delivers each accepted message to
// every online device of every recipient, the sending device included
// (R2). Pushes of one conversation leave in log order, each with
// the conversation's previous msgid so that a device notices a gap (I5).
package push

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/conversations"
)

// Name is the projection's stable name.
const Name = "parley.projection.push"

// Push is one thing to deliver: a message, a change to a message (an edit
// or a deletion), a read receipt or a typing signal.
type Push struct {
	// Message is the message; zero when Change, Receipt or Typing is set.
	Message domain.Message
	// Change is an edit or a deletion to deliver instead of a message.
	Change *domain.Amendment
	// Prev is the conversation's previous msgid, 0 when unknown.
	Prev domain.MsgID
	// Receipt, when set, makes this a read receipt instead of a message.
	Receipt *Receipt
	// Typing, when set, makes this a typing signal: not from the log, sent
	// by the gateway that took the request.
	Typing *Typing
	// Recipients are the accounts whose online devices get the push: a
	// message's sending device too (its prevMsgId chains its cursor like
	// any push); see SkipsOrigin.
	Recipients []domain.AccountID
}

// Receipt is an account's read cursor moving in a conversation.
type Receipt struct {
	Conversation domain.ConversationID
	Reader       domain.Sender
	MsgID        domain.MsgID
	At           time.Time
	// PushToOrigin: the read came through the HTTP API; the reader's
	// device gets the receipt too.
	PushToOrigin bool
}

// Typing is an account typing in a conversation.
type Typing struct {
	Conversation domain.ConversationID
	From         domain.Sender
	At           time.Time
}

// Origin is the device the push came from: the message's sender, the
// device that made the change, read or typed.
func (p Push) Origin() domain.Sender {
	if p.Change != nil {
		return p.Change.By
	}
	if p.Receipt != nil {
		return p.Receipt.Reader
	}
	if p.Typing != nil {
		return p.Typing.From
	}
	return p.Message.Sender
}

// SkipsOrigin reports whether the device of Origin does not get the push:
// a change, a read receipt or a typing signal skips the device it came
// from (its connection has the reply) — unless it came through the HTTP
// API, which no connection answered; a message goes to its sending
// device too, so that its cursor moves on with its own messages.
func (p Push) SkipsOrigin() bool {
	switch {
	case p.Change != nil:
		return !p.Change.PushToOrigin
	case p.Receipt != nil:
		return !p.Receipt.PushToOrigin
	}
	return p.Typing != nil
}

// At is when the server accepted what is pushed.
func (p Push) At() time.Time {
	if p.Change != nil {
		return p.Change.At
	}
	if p.Receipt != nil {
		return p.Receipt.At
	}
	if p.Typing != nil {
		return p.Typing.At
	}
	return p.Message.ServerTime
}

// Deliverer writes pushes to the devices' connections, locally or through
// the instance that holds them. It must not block on a slow device: a
// connection that cannot take a push is closed so that it resyncs (I5). An
// error (the route table is unreachable, say) makes the record retried;
// devices that got the push already ignore it the second time by msgid.
type Deliverer interface {
	Deliver(p Push) error
}

// Resolver is a Deliverer that can look up at once where the pushes to
// many accounts go (in a cluster: their online devices and the instances
// that hold them), for the pushes of a batch of records.
type Resolver interface {
	Deliverer
	// Resolve returns a Deliverer that delivers the pushes to accounts as
	// they were when Resolve looked them up; pushes to other accounts it
	// delivers as the Resolver does.
	Resolve(ctx context.Context, accounts []domain.AccountID) (Deliverer, error)
}

type resolvedKey struct{}

// Prepare implements projections.Preparer: when the Deliverer is a
// Resolver, the recipients of every direct message of recs are looked up
// once for the batch, instead of in round trips of their own before each
// push. That keeps the promise of docs/protocol.md ("while a device is
// connected, the server pushes every new message"): every record of recs
// was appended before the batch was read, so before Resolve; a device
// whose hello completed before a message was accepted is in what Resolve
// reads, with its current route. A device that says hello while the batch
// is delivered misses only the pushes of messages accepted before its
// hello — the sync it makes after the hello returns those (it waits for
// the history to hold everything in the log), and before this change it
// could miss them the same way between a push's look-up and its delivery.
func (p *Projection) Prepare(ctx context.Context, recs []projections.Record) context.Context {
	res, ok := p.out.(Resolver)
	if !ok {
		return ctx
	}
	seen := map[domain.AccountID]bool{}
	var accounts []domain.AccountID
	for _, r := range recs {
		m, ok, err := r.Message()
		if !ok || err != nil || m.Conversation.Kind() != domain.KindDirect {
			continue
		}
		a, b := m.Conversation.Accounts()
		for _, x := range []domain.AccountID{a, b} {
			if !seen[x] {
				seen[x] = true
				accounts = append(accounts, x)
			}
		}
	}
	if len(accounts) == 0 {
		return ctx
	}
	d, err := res.Resolve(ctx, accounts)
	if err != nil {
		return ctx
	}
	return context.WithValue(ctx, resolvedKey{}, d)
}

// deliverer is the Deliverer for a record applied under ctx.
func (p *Projection) deliverer(ctx context.Context) Deliverer {
	if d, ok := ctx.Value(resolvedKey{}).(Deliverer); ok {
		return d
	}
	return p.out
}

// Members resolves a group's members as of a position in the log.
type Members interface {
	MembersAt(ctx context.Context, g domain.GroupID, pos projections.Record) ([]domain.AccountID, error)
	// Changed tells that a group event of g passed in the log: members
	// read before it are stale.
	Changed(g domain.GroupID)
}

// MaxTracked bounds the conversations whose last msgid the projection
// remembers. Past it the memory starts over: the next push of each
// conversation then carries prevMsgId 0 ("unknown"), which clients answer
// with a sync, so nothing is lost.
const MaxTracked = 1 << 20

// Prev tells the msgid of the message before r's in conversation c, 0 when
// there is none (conversations.Predecessors.Before); known is false when
// it cannot be told.
type Prev func(ctx context.Context, r projections.Record, c domain.ConversationID) (id domain.MsgID, known bool, err error)

// Projection fans messages out to devices.
type Projection struct {
	out     Deliverer
	members Members
	// prev, when set, tells the previous msgid of a conversation the
	// projection does not remember (after a start, or past MaxTracked).
	prev Prev

	mu   sync.Mutex
	last map[domain.ConversationID]domain.MsgID
	// read is the highest receipt pushed per reader and conversation, so
	// that concurrent reads of two devices never push a cursor back.
	read map[readKey]domain.MsgID
	// receiptMembers is the largest group whose members get each other's
	// receipts.
	receiptMembers int
}

type readKey struct {
	c domain.ConversationID
	a domain.AccountID
}

// NewProjection returns the push projection.
func NewProjection(out Deliverer, members Members) *Projection {
	return &Projection{out: out, members: members, last: map[domain.ConversationID]domain.MsgID{}, read: map[readKey]domain.MsgID{},
		receiptMembers: domain.MaxReceiptMembers}
}

// WithReceiptMembers changes the largest group whose members get each
// other's receipts from domain.MaxReceiptMembers to n: for benchmarks that
// compare the cost of receipts in large groups. A server keeps the default,
// which docs/protocol.md promises.
func (p *Projection) WithReceiptMembers(n int) *Projection {
	p.receiptMembers = n
	return p
}

// WithPrev makes the projection ask prev for the previous msgid of a
// conversation it does not remember, so that its first push after a start
// still chains (prevMsgId) instead of saying "unknown". With prev the projection remembers only the last
// PrevTracked conversations: prev answers for the others.
func (p *Projection) WithPrev(prev Prev) *Projection {
	p.prev = prev
	return p
}

// PrevTracked bounds the conversations remembered when prev is set.
const PrevTracked = 1 << 16

func (p *Projection) maxTracked() int {
	if p.prev != nil {
		return PrevTracked
	}
	return MaxTracked
}

// Apply implements projections.Projection. A record seen again (a retry or
// a replay) is not pushed twice in one run.
func (p *Projection) Apply(ctx context.Context, r projections.Record) error {
	switch e := r.Event.(type) {
	case events.GroupCreated:
		p.members.Changed(domain.GroupID(e.Group))
	case events.GroupMembersAdded:
		p.members.Changed(domain.GroupID(e.Group))
	case events.GroupMembersRemoved:
		p.members.Changed(domain.GroupID(e.Group))
	}
	if rd, ok, err := conversations.ReadOf(r); ok {
		if err != nil {
			return err
		}
		return p.receipt(ctx, r, rd)
	}
	if a, ok, err := r.Amendment(); ok {
		if err != nil {
			return err
		}
		return p.deliverChange(ctx, r, a)
	}
	m, ok, err := r.Message()
	if !ok || err != nil {
		return err
	}
	p.mu.Lock()
	prev, known := p.last[m.Conversation]
	p.mu.Unlock()
	if m.MsgID <= prev {
		return nil
	}
	if !known && p.prev != nil {
		if id, known, err := p.prev(ctx, r, m.Conversation); err != nil {
			return fmt.Errorf("cannot read the previous message of %s: %w", m.Conversation, err)
		} else if known && id < m.MsgID {
			prev = id
		}
	}
	recipients, err := p.recipients(ctx, r, m.Conversation)
	if err != nil {
		return err
	}
	if err := p.deliverer(ctx).Deliver(Push{Message: m, Prev: prev, Recipients: recipients}); err != nil {
		return fmt.Errorf("cannot deliver %s: %w", m.Conversation, err)
	}
	p.mu.Lock()
	if _, known := p.last[m.Conversation]; !known && len(p.last) >= p.maxTracked() {
		p.last = map[domain.ConversationID]domain.MsgID{}
	}
	p.last[m.Conversation] = m.MsgID
	p.mu.Unlock()
	return nil
}

// receipt pushes a read to the reader's other devices and, in a direct
// conversation or a group of at most domain.MaxReceiptMembers, to the
// other participants' devices.
func (p *Projection) receipt(ctx context.Context, r projections.Record, rd conversations.Read) error {
	k := readKey{rd.Conversation, rd.Account}
	p.mu.Lock()
	top := p.read[k]
	p.mu.Unlock()
	if rd.MsgID <= top {
		return nil
	}
	recipients := []domain.AccountID{rd.Account}
	switch rd.Conversation.Kind() {
	case domain.KindDirect:
		if peer := rd.Conversation.Peer(rd.Account); peer != rd.Account {
			recipients = append(recipients, peer)
		}
	case domain.KindGroup:
		members, err := p.members.MembersAt(ctx, rd.Conversation.Group(), r)
		if err != nil {
			return fmt.Errorf("cannot resolve members of %s: %w", rd.Conversation, err)
		}
		if len(members) <= p.receiptMembers {
			recipients = append(recipients, slices.DeleteFunc(slices.Clone(members), func(m domain.AccountID) bool { return m == rd.Account })...)
		}
	}
	rc := &Receipt{Conversation: rd.Conversation, Reader: domain.Sender{Account: rd.Account, Device: rd.Device}, MsgID: rd.MsgID, At: rd.At,
		PushToOrigin: rd.PushToOrigin}
	if err := p.out.Deliver(Push{Receipt: rc, Recipients: recipients}); err != nil {
		return fmt.Errorf("cannot deliver a receipt in %s: %w", rd.Conversation, err)
	}
	p.mu.Lock()
	if _, known := p.read[k]; !known && len(p.read) >= p.maxTracked() {
		p.read = map[readKey]domain.MsgID{}
	}
	p.read[k] = max(p.read[k], rd.MsgID)
	p.mu.Unlock()
	return nil
}

// recipients are the accounts of conv as of r: both of a direct
// conversation, a group's members.
func (p *Projection) recipients(ctx context.Context, r projections.Record, conv domain.ConversationID) ([]domain.AccountID, error) {
	switch conv.Kind() {
	case domain.KindDirect:
		a, b := conv.Accounts()
		if b != a {
			return []domain.AccountID{a, b}, nil
		}
		return []domain.AccountID{a}, nil
	case domain.KindGroup:
		members, err := p.members.MembersAt(ctx, conv.Group(), r)
		if err != nil {
			return nil, fmt.Errorf("cannot resolve members of %s: %w", conv, err)
		}
		return members, nil
	}
	return nil, nil
}

// deliverChange pushes an edit or a deletion to the conversation's
// devices. It carries no prevMsgId: a change takes no place among the
// messages. Pushed again after a retry, it changes nothing on a device.
func (p *Projection) deliverChange(ctx context.Context, r projections.Record, a domain.Amendment) error {
	recipients, err := p.recipients(ctx, r, a.Conversation)
	if err != nil {
		return err
	}
	if err := p.out.Deliver(Push{Change: &a, Recipients: recipients}); err != nil {
		return fmt.Errorf("cannot deliver a change of %s: %w", a.Conversation, err)
	}
	return nil
}
