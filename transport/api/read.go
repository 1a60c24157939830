package api

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections/conversations"
)

// ReadRequest marks a conversation read up to MsgID, inclusive.
type ReadRequest struct {
	By           domain.Sender
	Conversation string
	MsgID        domain.MsgID
	// Trusted marks a service's call: it is not counted against the
	// reader's send budget.
	Trusted bool
	// Via is the transport the read came over.
	Via Via
}

// readCostText is what a refusal says a read costs.
var readCostText = fmt.Sprintf("a read that moves the cursor costs %d", SendCost)

// Read moves r.By's read cursor in r.Conversation up to r.MsgID,
// inclusive. A msgID at or below the cursor changes nothing and appends
// nothing; a msgID past the conversation's newest message is invalid. A
// read that moves the cursor is a durable write, with receipts pushed to
// the other participants: it costs SendCost of the reader's send budget
// (any msgid between two messages moves it, so without it one device
// could append a record for each msgid of a gap). The answer is the
// cursor once the conversation index has applied the read.
func (s *Service) Read(ctx context.Context, r ReadRequest) (conversations.ReadState, error) {
	who, msgID := r.By, r.MsgID
	conv, err := domain.ParseConversationID(r.Conversation)
	if err != nil {
		return conversations.ReadState{}, err
	}
	if err := s.authorizeRead(ctx, who.Account, conv); err != nil {
		return conversations.ReadState{}, err
	}
	if msgID <= 0 {
		return conversations.ReadState{}, &domain.InvalidError{Field: "msgId", Reason: "must be positive"}
	}
	st, err := s.readState(ctx, conv, who.Account)
	if err != nil {
		return conversations.ReadState{}, err
	}
	if msgID > st.Latest {
		return conversations.ReadState{}, &domain.InvalidError{Field: "msgId", Reason: fmt.Sprintf("is past the conversation's newest message (%d)", st.Latest)}
	}
	if msgID <= st.ReadMsgID {
		return st, nil
	}
	if err := s.writable(); err != nil {
		return conversations.ReadState{}, err
	}
	cost, err := s.spend(Actor{Account: who.Account, Trusted: r.Trusted}, SendCost, readCostText)
	if err != nil {
		return conversations.ReadState{}, err
	}
	e := events.ConversationRead{Conversation: conv.String(), Account: string(who.Account), Device: string(who.Device),
		MsgID: int64(msgID), At: s.cfg.Now().UnixMilli()}
	if r.Via == ViaHTTP {
		e.Via = events.ViaHTTP
	}
	pos, err := s.append(ctx, uuid.NewString(), e)
	if err != nil {
		// Perhaps appended after all: then a retry moves nothing, and is
		// free. Without the cost back, retries the docs invite would burn
		// the budget while the log is down.
		cost.giveBack()
		return conversations.ReadState{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	if err := s.rm.ConversationsProgress.WaitFor(wctx, pos.Partition, pos.Offset+1); err != nil {
		return conversations.ReadState{}, fmt.Errorf("the read is in the log but not applied yet: %w: %v", ErrUnavailable, err)
	}
	st, err = s.rm.Conversations.ReadState(ctx, conv, who.Account)
	if err != nil {
		return conversations.ReadState{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return st, nil
}

// readState is who's place in conv once the index holds everything
// acknowledged before the call.
func (s *Service) readState(ctx context.Context, conv domain.ConversationID, who domain.AccountID) (conversations.ReadState, error) {
	if err := s.catchUp(ctx, s.rm.ConversationsProgress, conv); err != nil {
		return conversations.ReadState{}, err
	}
	st, err := s.rm.Conversations.ReadState(ctx, conv, who)
	if err != nil {
		return conversations.ReadState{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return st, nil
}

// Readers is who has read a message.
type Readers struct {
	// Count is how many of the conversation's other participants have
	// read up to the message or past it.
	Count int
	// Of is how many other participants there are.
	Of int
	// Accounts names the readers, in a direct conversation or a group of
	// at most domain.MaxReceiptMembers (empty, not nil, for none); nil
	// above.
	Accounts []domain.AccountID
}

// Readers tells how many of the other participants of conversation have
// read msgID (and, in small conversations, which).
func (s *Service) Readers(ctx context.Context, by Actor, conversation string, msgID domain.MsgID) (Readers, error) {
	if err := s.spendRead(by); err != nil {
		return Readers{}, err
	}
	who := by.Account
	conv, err := domain.ParseConversationID(conversation)
	if err != nil {
		return Readers{}, err
	}
	if err := s.authorizeRead(ctx, who, conv); err != nil {
		return Readers{}, err
	}
	if msgID <= 0 {
		return Readers{}, &domain.InvalidError{Field: "msgId", Reason: "must be positive"}
	}
	var members []domain.AccountID
	if conv.Kind() == domain.KindDirect {
		members = []domain.AccountID{conv.Peer(who)}
	} else {
		g, ok, err := s.rm.Groups.Group(ctx, conv.Group())
		if err != nil {
			return Readers{}, fmt.Errorf("cannot read group %s: %w: %v", conv.Group(), ErrUnavailable, err)
		}
		if !ok {
			return Readers{}, fmt.Errorf("group %s: %w", conv.Group(), domain.ErrNotFound)
		}
		for _, m := range g.Members() {
			if m != who {
				members = append(members, m)
			}
		}
	}
	st, err := s.readState(ctx, conv, who)
	if err != nil {
		return Readers{}, err
	}
	if msgID > st.Latest {
		return Readers{}, &domain.InvalidError{Field: "msgId", Reason: fmt.Sprintf("is past the conversation's newest message (%d)", st.Latest)}
	}
	ids, err := s.rm.Conversations.ReadMsgIDs(ctx, conv, members)
	if err != nil {
		return Readers{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	named := len(members)+1 <= domain.MaxReceiptMembers
	out := Readers{Of: len(members)}
	if named {
		out.Accounts = []domain.AccountID{}
	}
	for i, id := range ids {
		if id >= msgID {
			out.Count++
			if named {
				out.Accounts = append(out.Accounts, members[i])
			}
		}
	}
	return out, nil
}
