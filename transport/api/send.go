package api

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
)

// Target is whom a message goes to: exactly one of Account and Group.
type Target struct {
	Account string
	Group   string
}

// Ack is the answer to an accepted send.
type Ack struct {
	MsgID        domain.MsgID
	MessageID    uuid.UUID
	Conversation domain.ConversationID
	ServerTime   time.Time
	// Duplicate is true when the client message id was seen before and this
	// is the original ack.
	Duplicate bool
}

// SendRequest is a message a client asks to send.
type SendRequest struct {
	From        domain.Sender
	To          Target
	ClientMsgID string
	Kind        string
	Body        string
	// Retry marks a repeat of an attempt whose ack was lost: when no
	// reservation of the client message id is found (it expired or was
	// lost), the lookup in the store first waits until the store holds
	// everything already in the log, so a record that landed despite the
	// lost ack is found and not appended again.
	Retry bool
	// Trusted marks a service's call (the HTTP API's service credential):
	// it is not counted against the sender's send budget.
	Trusted bool
}

// Send accepts a message: validate, authorize, append MessageSent keyed by
// the conversation, and answer with the msgid the log assigned. A retry with
// the same client message id returns the original ack and appends nothing (I4).
func (s *Service) Send(ctx context.Context, r SendRequest) (ack Ack, err error) {
	started := time.Now()
	defer func() {
		result := "accepted"
		switch {
		case err != nil:
			result = string(Code(err))
		case ack.Duplicate:
			result = "duplicate"
		}
		s.cfg.Observer.SendDone(result, time.Since(started))
	}()
	conv, err := s.resolve(r.From.Account, r.To)
	if err != nil {
		return Ack{}, err
	}
	d, err := domain.NewDraft(r.From, conv, r.ClientMsgID, r.Kind, r.Body)
	if err != nil {
		return Ack{}, err
	}
	if conv.Kind() == domain.KindGroup {
		if err := s.authorizeGroup(ctx, conv, r.From.Account); err != nil {
			return Ack{}, err
		}
	}
	cost, err := s.spendMessage(Actor{Account: r.From.Account, Trusted: r.Trusted}, r.Body)
	if err != nil {
		return Ack{}, err
	}
	defer func() { cost.settle(ack, err) }()
	c := s.sendClaim(r)
	c.cost = cost
	return s.once(ctx, c, conv, func() (Ack, events.Position, error) {
		id, err := uuid.NewV7()
		if err != nil {
			return Ack{}, events.Position{}, err
		}
		now := s.cfg.Now()
		return s.appendFor(ctx, id.String(), events.NewMessageSent(id.String(), d, now), func(pos events.Position) (Ack, error) {
			msgid, err := events.MsgID(s.log.Epoch(), pos.Offset)
			if err != nil {
				return Ack{}, err
			}
			return Ack{MsgID: msgid, MessageID: id, Conversation: conv, ServerTime: time.UnixMilli(now.UnixMilli())}, nil
		})
	})
}

// catchUp waits until t has applied everything in conv's partition that is
// in the log now.
func (s *Service) catchUp(ctx context.Context, t Progress, conv domain.ConversationID) error {
	return s.catchUpPartitions(ctx, t, []int32{events.PartitionFor(conv.String(), s.log.Partitions())})
}

func (s *Service) resolve(me domain.AccountID, to Target) (domain.ConversationID, error) {
	switch {
	case to.Account != "" && to.Group != "":
		return domain.ConversationID{}, &domain.InvalidError{Field: "to", Reason: "names both an account and a group"}
	case to.Account != "":
		peer, err := domain.ParseAccountID(to.Account)
		if err != nil {
			return domain.ConversationID{}, err
		}
		return domain.DirectConversation(me, peer), nil
	case to.Group != "":
		g, err := domain.ParseGroupID(to.Group)
		if err != nil {
			return domain.ConversationID{}, err
		}
		return domain.GroupConversation(g), nil
	}
	return domain.ConversationID{}, &domain.InvalidError{Field: "to", Reason: "names no account or group"}
}
