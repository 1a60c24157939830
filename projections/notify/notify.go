// Package notify is the offline-notification projection: for each message,
// every recipient with no online device, who has not muted the
// conversation, gets a notification through a webhook that an application
// bridges to APNs or FCM (docs/notifications.md). It runs on a reader of
// its own, so that a slow or failing webhook delays only its own progress
// (its lag), never sending or pushing; it waits, it does not drop, and its
// progress moves only past what the webhook accepted (at least once, with
// a stable id per message and recipient for deduplication).
package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/conversations"
)

// Name is the projection's stable name: its consumer group in scale-out
// and its progress on a single node.
const Name = "parley.projection.notify"

// PreviewRunes bounds a notification's body preview, in characters
// (docs/notifications.md): enough for a lock screen, and it keeps each
// notification small (at most 4 bytes a character).
const PreviewRunes = 100

// Notification is one notification to one recipient, as the webhook
// carries it (docs/notifications.md documents every field).
type Notification struct {
	// ID is stable for a message and a recipient: a receiver drops one it
	// has seen (delivery is at least once).
	ID           string `json:"id"`
	Account      string `json:"account"`
	Conversation string `json:"conversation"`
	MsgID        int64  `json:"msgId"`
	Sender       string `json:"sender"`
	// Time is the message's server time, Unix milliseconds.
	Time int64  `json:"time"`
	Kind string `json:"kind"`
	// Preview is the body's first PreviewRunes characters; Truncated
	// says the body was longer.
	Preview   string `json:"preview"`
	Truncated bool   `json:"truncated,omitempty"`
	// Unread is the recipient's unread count in the conversation, this
	// message included: the badge.
	Unread int64 `json:"unread"`
}

// NotificationID is the stable id of the notification of message msgID
// of conversation c to account: the same on every redelivery and replay.
func NotificationID(c domain.ConversationID, msgID domain.MsgID, account domain.AccountID) string {
	h := sha256.Sum256([]byte(c.String() + "\n" + strconv.FormatInt(int64(msgID), 10) + "\n" + string(account)))
	return hex.EncodeToString(h[:16])
}

// Preview cuts body to PreviewRunes characters.
func Preview(body string) (preview string, truncated bool) {
	if utf8.RuneCountInString(body) <= PreviewRunes {
		return body, false
	}
	n := 0
	for i := range body {
		if n == PreviewRunes {
			return body[:i], true
		}
		n++
	}
	return body, false
}

// Members resolves a group's members as of a position in the log
// (groups.At).
type Members interface {
	MembersAt(ctx context.Context, g domain.GroupID, pos projections.Record) ([]domain.AccountID, error)
	// Changed tells that a group event of g passed in the log.
	Changed(g domain.GroupID)
}

// Presence tells whether an account has a device online.
type Presence interface {
	HasOnline(ctx context.Context, account domain.AccountID) (bool, error)
}

// RouteTable is the part of the route table (infra/routes) that Routes
// reads.
type RouteTable interface {
	Online(ctx context.Context, account domain.AccountID) ([]domain.UniqueID, error)
	Lookup(ctx context.Context, uids []domain.UniqueID) (map[domain.UniqueID]string, error)
	Alive(ctx context.Context, instance string) (bool, error)
}

// Routes is Presence from the route table: an account is online when a
// device in its online set holds a route — on an instance that is alive
// when CheckAlive is set (a cluster, where an instance that died leaves
// its routes behind until they expire). A single node's routes are all its
// own, released at close, and nobody beats for it: it leaves CheckAlive off.
type Routes struct {
	Table      RouteTable
	CheckAlive bool
}

// HasOnline implements Presence.
func (r Routes) HasOnline(ctx context.Context, account domain.AccountID) (bool, error) {
	uids, err := r.Table.Online(ctx, account)
	if err != nil || len(uids) == 0 {
		return false, err
	}
	owners, err := r.Table.Lookup(ctx, uids)
	if err != nil {
		return false, err
	}
	if !r.CheckAlive {
		return len(owners) > 0, nil
	}
	dead := map[string]bool{}
	for _, inst := range owners {
		if dead[inst] {
			continue
		}
		alive, err := r.Table.Alive(ctx, inst)
		if err != nil {
			return false, err
		}
		if alive {
			return true, nil
		}
		dead[inst] = true
	}
	return false, nil
}

// Unread is the conversation index's read side, with its progress: the
// projection reads a recipient's unread count once the index holds the
// message.
type Unread interface {
	ReadState(ctx context.Context, c domain.ConversationID, account domain.AccountID) (conversations.ReadState, error)
}

// Deliverer hands notifications to the webhook and returns once every one
// is accepted or dropped for good (Webhook.Deliver).
type Deliverer interface {
	Deliver(ctx context.Context, ns []Notification) error
}

// Observer counts what the projection decides.
type Observer interface {
	// Notified counts notifications by outcome: "sent", "online",
	// "muted", "dropped" (a 4xx answer).
	Notified(outcome string, n int)
}

type noObserver struct{}

func (noObserver) Notified(string, int) {}

// Config wires a Projection.
type Config struct {
	Members  Members
	Presence Presence
	Mutes    Mutes
	// Unread and UnreadProgress are the conversation index and its
	// progress.
	Unread         Unread
	UnreadProgress projections.Tracker
	Out            Deliverer
	// Observer counts outcomes; nil counts nothing.
	Observer Observer
	// Now is the clock that mutes are checked against. Default time.Now.
	Now func() time.Time
}

// Projection turns messages into notifications.
type Projection struct{ cfg Config }

// NewProjection returns the notify projection.
func NewProjection(cfg Config) *Projection {
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Projection{cfg: cfg}
}

// Apply implements projections.Projection.
func (p *Projection) Apply(ctx context.Context, r projections.Record) error {
	return p.ApplyBatch(ctx, []projections.Record{r})
}

// ApplyBatch implements projections.Batcher: the notifications of a batch
// go to the webhook together, and the call returns once it took them all,
// so that progress never passes a notification not yet accepted. Applied
// again (a redelivery), it sends the same notifications with the same ids.
func (p *Projection) ApplyBatch(ctx context.Context, recs []projections.Record) error {
	var out []Notification
	for _, r := range recs {
		if g, ok := groupOf(r); ok {
			p.cfg.Members.Changed(g)
			continue
		}
		m, ok, err := r.Message()
		if !ok || err != nil {
			continue // poison records are counted by the projections that store messages
		}
		ns, err := p.notifications(ctx, r, m)
		if err != nil {
			return err
		}
		out = append(out, ns...)
		if len(out) >= maxHeld {
			if err := p.deliver(ctx, out); err != nil {
				return err
			}
			out = out[:0]
		}
	}
	return p.deliver(ctx, out)
}

// maxHeld bounds the notifications a batch holds before it hands them
// over: a batch of 500 records to 500-member groups would otherwise make
// a quarter of a million at once.
const maxHeld = 256

func (p *Projection) deliver(ctx context.Context, ns []Notification) error {
	if len(ns) == 0 {
		return nil
	}
	if err := p.cfg.Out.Deliver(ctx, ns); err != nil {
		return fmt.Errorf("cannot deliver notifications: %w", err)
	}
	return nil
}

// notifications are m's to its offline, unmuted recipients.
func (p *Projection) notifications(ctx context.Context, r projections.Record, m domain.Message) ([]Notification, error) {
	recipients, err := p.recipients(ctx, r, m)
	if err != nil || len(recipients) == 0 {
		return nil, err
	}
	now := p.cfg.Now()
	var out []Notification
	var online, muted int
	waited := false
	for _, a := range recipients {
		if until, ok, err := p.cfg.Mutes.MutedUntil(ctx, a, m.Conversation); err != nil {
			return nil, fmt.Errorf("cannot read the mute of %s in %s: %w", a, m.Conversation, err)
		} else if ok && Muted(until, now) {
			muted++
			continue
		}
		on, err := p.cfg.Presence.HasOnline(ctx, a)
		if err != nil {
			return nil, fmt.Errorf("cannot tell whether %s is online: %w", a, err)
		}
		if on {
			online++
			continue
		}
		if !waited {
			// The unread count must include this message.
			if err := p.cfg.UnreadProgress.WaitFor(ctx, r.Position.Partition, r.Position.Offset+1); err != nil {
				return nil, fmt.Errorf("cannot wait for the conversation index: %w", err)
			}
			waited = true
		}
		st, err := p.cfg.Unread.ReadState(ctx, m.Conversation, a)
		if err != nil {
			return nil, fmt.Errorf("cannot read the unread count of %s in %s: %w", a, m.Conversation, err)
		}
		preview, cut := Preview(m.Body)
		out = append(out, Notification{
			ID: NotificationID(m.Conversation, m.MsgID, a), Account: string(a), Conversation: m.Conversation.String(),
			MsgID: int64(m.MsgID), Sender: string(m.Sender.Account), Time: m.ServerTime.UnixMilli(), Kind: m.Kind,
			Preview: preview, Truncated: cut, Unread: st.Unread,
		})
	}
	p.cfg.Observer.Notified("online", online)
	p.cfg.Observer.Notified("muted", muted)
	return out, nil
}

// recipients are the accounts m goes to, its sender excepted: the peer of
// a direct conversation, the other members of a group as of m.
func (p *Projection) recipients(ctx context.Context, r projections.Record, m domain.Message) ([]domain.AccountID, error) {
	from := m.Sender.Account
	switch m.Conversation.Kind() {
	case domain.KindDirect:
		if peer := m.Conversation.Peer(from); peer != from {
			return []domain.AccountID{peer}, nil
		}
		return nil, nil
	case domain.KindGroup:
		members, err := p.cfg.Members.MembersAt(ctx, m.Conversation.Group(), r)
		if err != nil {
			return nil, fmt.Errorf("cannot resolve members of %s: %w", m.Conversation, err)
		}
		out := make([]domain.AccountID, 0, len(members))
		for _, a := range members {
			if a != from {
				out = append(out, a)
			}
		}
		return out, nil
	}
	return nil, nil
}

// groupOf is the group a group event changes.
func groupOf(r projections.Record) (domain.GroupID, bool) {
	switch e := r.Event.(type) {
	case events.GroupCreated:
		return domain.GroupID(e.Group), true
	case events.GroupMembersAdded:
		return domain.GroupID(e.Group), true
	case events.GroupMembersRemoved:
		return domain.GroupID(e.Group), true
	}
	return "", false
}
