package events

// ConversationReadV1 is the versioned name of ConversationRead.
const ConversationReadV1 = "ConversationRead.v1"

// ConversationRead v1: an account has read a conversation up to and
// including a msgid. It is keyed by the conversation, so it is ordered with
// the conversation's messages; the conversation index keeps the highest
// msgid each account has read (a cursor never moves back, so applying the
// event twice, or an older one late, changes nothing).
type ConversationRead struct {
	// Conversation is the conversation id, "d:<a>:<b>" or "g:<group>".
	Conversation string `json:"conversation"`
	// Account and Device name who read it, on which device.
	Account string `json:"account"`
	Device  string `json:"device"`
	// MsgID is the msgid read up to, inclusive.
	MsgID int64 `json:"msgId"`
	// At is when the gateway accepted the read, Unix milliseconds.
	At int64 `json:"at"`
	// Via is "http" for a read made through the HTTP API (its device gets
	// the receipt too); absent for one made over a connection.
	Via string `json:"via,omitempty"`
}

// EventName implements Event.
func (ConversationRead) EventName() string { return ConversationReadV1 }

// Key implements Event.
func (e ConversationRead) Key() string { return e.Conversation }
