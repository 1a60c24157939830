package wire

import "strconv"

// Read state (docs/protocol.md, "Read state"). A read request moves the
// account's cursor; its reply is read_state. The cursor's moves are pushed
// as "read" frames (no id) to the account's other devices and, in direct
// conversations and small groups, to the other participants' devices.
// readers asks who has read a message: the reply is reader_count.
const (
	// TypeReadState replies to read: Conversation, ReadMsgID, Unread.
	TypeReadState = "read_state"
	// TypeReadPush is a receipt: Conversation, Account, MsgID.
	TypeReadPush = "read"
	// TypeReaderCount replies to readers: Conversation, MsgID, Count, Of,
	// and Accounts in small conversations.
	TypeReaderCount = "reader_count"
)

// AppendReadPush appends the receipt frame of account's cursor in
// conversation.
func AppendReadPush(b []byte, conversation, account string, msgID int64) []byte {
	b = grow(b, 64+len(conversation)+len(account))
	b = append(b, `{"type":"read","conversation":`...)
	b = appendString(b, conversation)
	b = append(b, `,"account":`...)
	b = appendString(b, account)
	b = append(b, `,"msgId":`...)
	b = strconv.AppendInt(b, msgID, 10)
	return append(b, '}')
}
