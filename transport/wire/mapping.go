package wire

import (
	"time"

	"github.com/parley-chat/parley/domain"
)

// FromMessage maps a domain message to its wire form.
func FromMessage(m domain.Message) Message {
	out := Message{
		MsgID:        int64(m.MsgID),
		MessageID:    m.ID.String(),
		ClientMsgID:  m.ClientMsgID,
		Conversation: m.Conversation.String(),
		From:         string(m.Sender.Account),
		Device:       string(m.Sender.Device),
		Kind:         m.Kind,
		Body:         m.Body,
		ServerTime:   m.ServerTime.UnixMilli(),
		Deleted:      m.Deleted,
	}
	if !m.EditedAt.IsZero() {
		out.EditedAt = m.EditedAt.UnixMilli()
	}
	return out
}

// EncodeMessage is AppendMessage's encoding of m, in a slice of exactly its
// length: the form a cache keeps to answer syncs with (see
// AppendEncodedMessages).
func EncodeMessage(m *domain.Message) []byte {
	w := FromMessage(*m)
	return AppendMessage(make([]byte, 0, EncodedLen(&w)), &w)
}

// FromMessages maps a page of messages.
func FromMessages(ms []domain.Message) []Message {
	out := make([]Message, len(ms))
	for i, m := range ms {
		out[i] = FromMessage(m)
	}
	return out
}

// FromGroup maps a group.
func FromGroup(g *domain.Group) GroupInfo {
	ms := g.Members()
	members := make([]string, len(ms))
	for i, m := range ms {
		members[i] = string(m)
	}
	return GroupInfo{Group: string(g.ID()), Name: g.Name(), Owner: string(g.Owner()), Members: members}
}

// FromConversation maps a conversation's latest message, as seen by who.
func FromConversation(conv domain.ConversationID, latest domain.MsgID, at time.Time, who domain.AccountID) ConversationInfo {
	out := ConversationInfo{Conversation: conv.String(), Kind: conv.Kind().String(), LatestMsgID: int64(latest), LatestTime: at.UnixMilli()}
	if conv.Kind() == domain.KindDirect {
		out.Peer = string(conv.Peer(who))
	} else {
		out.Group = string(conv.Group())
	}
	return out
}
