package api

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/idempotency"
)

// EditRequest asks to replace the body of one of the sender's messages.
type EditRequest struct {
	By           domain.Sender
	Conversation string
	MsgID        domain.MsgID
	// ClientMsgID is the edit's idempotency key. Sends and edits share an
	// account's client message ids: a key names one request.
	ClientMsgID string
	Body        string
	// Trusted marks a service's call: it is not counted against the
	// sender's send budget.
	Trusted bool
	// Via is the transport the edit came over.
	Via Via
}

// Via is the transport a change or a read came over. One made over a
// connection is not pushed to the device that made it (its connection
// has the answer); one made through the HTTP API is pushed to every
// device of the account, that one included.
type Via uint8

const (
	// ViaSocket: a connection of the device made it.
	ViaSocket Via = iota
	// ViaHTTP: the HTTP API did.
	ViaHTTP
)

// Edit appends MessageEdited for a message of the sender's own, sent
// within the edit window, and answers with an ack naming the message and
// the time of the edit. A retry with the same client message id returns
// the first ack (Duplicate) and appends nothing (I4).
func (s *Service) Edit(ctx context.Context, r EditRequest) (ack Ack, err error) {
	conv, err := domain.ParseConversationID(r.Conversation)
	if err != nil {
		return Ack{}, err
	}
	a, err := domain.NewEdit(r.By, conv, r.MsgID, r.ClientMsgID, r.Body)
	if err != nil {
		return Ack{}, err
	}
	a.PushToOrigin = r.Via == ViaHTTP
	if err := s.authorizeRead(ctx, r.By.Account, conv); err != nil {
		return Ack{}, err
	}
	// An edit's reservation is kept apart from sends' ('/' is never in an
	// id): a send's key reused for an edit must reach the store's check
	// below, not be answered with the send's ack.
	another := &domain.InvalidError{Field: "clientMsgId", Reason: "names another request of yours"}
	c := claim{
		key: idempotency.Key{Account: r.By.Account, ClientMsgID: "edit/" + r.ClientMsgID},
		lookup: func(ctx context.Context) (Ack, bool, error) {
			m, ok, err := s.rm.Store.ByClientMsgID(ctx, r.By.Account, r.ClientMsgID)
			switch {
			case err != nil || !ok:
				return Ack{}, false, err
			case m.Conversation != conv || m.MsgID != r.MsgID:
				return Ack{}, false, another
			case m.ClientMsgID == r.ClientMsgID:
				return Ack{}, false, another // the send's own key
			}
			return Ack{MsgID: m.MsgID, MessageID: m.ID, Conversation: conv, ServerTime: m.EditedAt, Duplicate: true}, true, nil
		},
		fits: func(a Ack) error {
			if a.Conversation != conv || a.MsgID != r.MsgID {
				return another
			}
			return nil
		},
	}
	cost, err := s.spendMessage(Actor{Account: r.By.Account, Trusted: r.Trusted}, r.Body)
	if err != nil {
		return Ack{}, err
	}
	defer func() { cost.settle(ack, err) }()
	c.cost = cost
	return s.once(ctx, c, conv, func() (Ack, events.Position, error) {
		if err := s.catchUp(ctx, s.rm.StoreProgress, conv); err != nil {
			return Ack{}, events.Position{}, err
		}
		ack, pos, err := s.change(ctx, a)
		if err == nil {
			s.claimSendKey(ctx, r.By.Account, r.ClientMsgID, ack, pos)
		}
		return ack, pos, err
	})
}

// claimSendKey records an edit's ack under its key as a send's too, before
// the edit is answered, so that a send with the edit's key gets the edit's
// ack however far the history lags: a send's lookup waits only for its
// own conversation's partition, not the edit's. A key that a send holds
// or used is left alone, and a reservation that cannot be written leaves
// the send to the history's lookup.
func (s *Service) claimSendKey(ctx context.Context, account domain.AccountID, clientMsgID string, ack Ack, pos events.Position) {
	key := idempotency.Key{Account: account, ClientMsgID: clientMsgID}
	e, err := s.cfg.Reservations.Reserve(ctx, key, pos.Partition, reservationLease, s.cfg.ReservationTTL)
	if err != nil || e.State != idempotency.Reserved {
		return
	}
	s.leases.hold(key, e.Token)
	s.complete(ctx, key, e.Token, ack, pos, false)
}

// Delete appends MessageDeleted for a message of the sender's own: every
// read model then keeps a tombstone without its body. Deleting a
// tombstone again is answered with a Duplicate ack and appends nothing.
// Groups have no admins: only the sender deletes a message.
func (s *Service) Delete(ctx context.Context, by domain.Sender, conversation string, id domain.MsgID, via Via) (Ack, error) {
	conv, err := domain.ParseConversationID(conversation)
	if err != nil {
		return Ack{}, err
	}
	a, err := domain.NewDelete(by, conv, id)
	if err != nil {
		return Ack{}, err
	}
	a.PushToOrigin = via == ViaHTTP
	if err := s.authorizeRead(ctx, by.Account, conv); err != nil {
		return Ack{}, err
	}
	if err := s.catchUp(ctx, s.rm.StoreProgress, conv); err != nil {
		return Ack{}, err
	}
	ack, _, err := s.change(ctx, a)
	return ack, err
}

// change checks a against the message it names, as the history holds it
// once it has applied the log so far, and appends it.
func (s *Service) change(ctx context.Context, a domain.Amendment) (Ack, events.Position, error) {
	m, ok, err := s.rm.Store.Message(ctx, a.Conversation, a.MsgID)
	if err != nil {
		return Ack{}, events.Position{}, fmt.Errorf("cannot read message %d: %w: %v", a.MsgID, ErrUnavailable, err)
	}
	if !ok {
		return Ack{}, events.Position{}, fmt.Errorf("message %d of %s: %w", a.MsgID, a.Conversation, domain.ErrNotFound)
	}
	now := s.cfg.Now()
	if err := a.Check(m, now, s.cfg.EditWindow); err != nil {
		return Ack{}, events.Position{}, err
	}
	if a.Delete && m.Deleted {
		return Ack{MsgID: m.MsgID, MessageID: m.ID, Conversation: a.Conversation, Duplicate: true}, events.Position{}, nil
	}
	return s.appendFor(ctx, uuid.NewString(), events.NewAmendmentEvent(a, now), func(events.Position) (Ack, error) {
		return Ack{MsgID: m.MsgID, MessageID: m.ID, Conversation: a.Conversation, ServerTime: time.UnixMilli(now.UnixMilli())}, nil
	})
}
