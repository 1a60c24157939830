package wire

import (
	"strconv"
	"time"

	"github.com/parley-chat/parley/domain"
)

// Message lifecycle: requests, pushes and codes (docs/protocol.md, "Edit
// and delete"). Kept apart from frames.go so that the lifecycle reads as
// one piece.
const (
	// TypeEdit replaces the body of one of your messages; the reply is an ack.
	TypeEdit = "edit"
	// TypeDelete deletes one of your messages for everyone; the reply is an ack.
	TypeDelete = "delete"
	// TypeEdited is pushed when a message's body was edited; it has no id.
	TypeEdited = "edited"
	// TypeDeleted is pushed when a message was deleted for everyone.
	TypeDeleted = "deleted"
)

// CodeTooLate: the message's edit window has passed.
const CodeTooLate Code = "too_late"

func init() {
	knownTypes[TypeEdit] = []string{"conversation", "msgId", "clientMsgId", "body"}
	knownTypes[TypeDelete] = []string{"conversation", "msgId"}
}

// AppendChange appends the push of an edit or a deletion: an edit carries
// the new body and editedAt, a deletion deletedAt.
func AppendChange(b []byte, a *domain.Amendment) []byte {
	b = grow(b, 128+len(a.Body)+len(a.Body)/8)
	if a.Delete {
		b = append(b, `{"type":"deleted","conversation":`...)
	} else {
		b = append(b, `{"type":"edited","conversation":`...)
	}
	b = appendString(b, a.Conversation.String())
	b = append(b, `,"msgId":`...)
	b = strconv.AppendInt(b, int64(a.MsgID), 10)
	if a.Delete {
		b = append(b, `,"deletedAt":`...)
		b = strconv.AppendInt(b, a.At.UnixMilli(), 10)
		return append(b, '}')
	}
	if a.Body != "" {
		b = append(b, `,"body":`...)
		b = appendString(b, a.Body)
	}
	b = append(b, `,"editedAt":`...)
	b = strconv.AppendInt(b, a.At.UnixMilli(), 10)
	return append(b, '}')
}

// FromAck is the ack frame of a send, an edit or a deletion; a zero time
// (the ack of a repeated deletion) is left out. AppendAck encodes it: a
// field added here must be added there.
func FromAck(id string, msgID domain.MsgID, messageID string, conv domain.ConversationID, at time.Time, duplicate bool) ServerFrame {
	f := ServerFrame{ID: id, Type: TypeAck, MsgID: int64(msgID), MessageID: messageID, Conversation: conv.String(), Duplicate: duplicate}
	if !at.IsZero() {
		f.ServerTime = at.UnixMilli()
	}
	return f
}

// AppendAck appends f, an ack frame made by FromAck, as encoding/json
// encodes it: what every send is answered with, without reflection.
func AppendAck(b []byte, f *ServerFrame) []byte {
	b = grow(b, 120+len(f.ID)+len(f.MessageID)+len(f.Conversation))
	b = append(b, '{')
	if f.ID != "" {
		b = append(b, `"id":`...)
		b = appendString(b, f.ID)
		b = append(b, ',')
	}
	b = append(b, `"type":`...)
	b = appendString(b, f.Type)
	if f.ServerTime != 0 {
		b = append(b, `,"serverTime":`...)
		b = strconv.AppendInt(b, f.ServerTime, 10)
	}
	if f.MsgID != 0 {
		b = append(b, `,"msgId":`...)
		b = strconv.AppendInt(b, f.MsgID, 10)
	}
	if f.MessageID != "" {
		b = append(b, `,"messageId":`...)
		b = appendString(b, f.MessageID)
	}
	if f.Conversation != "" {
		b = append(b, `,"conversation":`...)
		b = appendString(b, f.Conversation)
	}
	if f.Duplicate {
		b = append(b, `,"duplicate":true`...)
	}
	return append(b, '}')
}
