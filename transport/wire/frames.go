// Package wire is Parley's WebSocket protocol: JSON text frames, one object
// per frame. Requests carry an id that the reply echoes; pushes carry none.
// docs/protocol.md is the reference; this package is the one Go definition
// that the gateway and the Go client share.
package wire

// MaxFrameBytes is the largest frame the server reads. It leaves room for a
// body of domain.MaxBodyBytes even when JSON escapes every byte of it.
const MaxFrameBytes = 128 << 10

// MaxRequestIDLen is the longest request id.
const MaxRequestIDLen = 64

// Request types, sent by clients.
const (
	TypeHello         = "hello"
	TypeRenew         = "renew"
	TypePing          = "ping"
	TypeSend          = "send"
	TypeSync          = "sync"
	TypeConversations = "conversations"
	TypeGroupCreate   = "group_create"
	TypeGroupAdd      = "group_add"
	TypeGroupRemove   = "group_remove"
	TypeGroups        = "groups"
	// TypeRead, TypeReaders: see reads.go.
	TypeRead    = "read"
	TypeReaders = "readers"
)

// Server frame types.
const (
	TypeWelcome          = "welcome"
	TypeRenewed          = "renewed"
	TypePong             = "pong"
	TypeAck              = "ack"
	TypeMessages         = "messages"
	TypeConversationList = "conversation_list"
	TypeGroup            = "group"
	TypeGroupList        = "group_list"
	TypeError            = "error"
	// TypePush is a message pushed to an online device; it has no id.
	TypePush = "message"
)

// Request is any client frame. Which fields matter depends on Type; the
// others are ignored, as are unknown fields (so newer clients still talk to
// older servers).
type Request struct {
	// ID is chosen by the client (1..64 bytes) and echoed in the reply.
	ID   string `json:"id"`
	Type string `json:"type"`

	// hello, renew (optional: a fresh token lets the lease outlive the old one)
	Token string `json:"token,omitempty"`

	// send: exactly one of To (an account) and Group.
	To          string `json:"to,omitempty"`
	Group       string `json:"group,omitempty"`
	ClientMsgID string `json:"clientMsgId,omitempty"`
	Kind        string `json:"kind,omitempty"`
	Body        string `json:"body,omitempty"`
	// Retry marks a send that repeats an earlier attempt whose ack was not
	// received (a timeout, a lost connection). The server then waits until
	// its history holds everything already in the log before it looks the
	// client message id up, so the retry can never make a second message.
	Retry bool `json:"retry,omitempty"`

	// sync; edit and delete (Conversation, MsgID; an edit also ClientMsgID,
	// Body); read and readers (Conversation, MsgID: read up to, inclusive)
	Conversation string `json:"conversation,omitempty"`
	MsgID        int64  `json:"msgId,omitempty"`
	LastTime     int64  `json:"lastTime,omitempty"`
	LastMsgID    int64  `json:"lastMsgId,omitempty"`
	Limit        int    `json:"limit,omitempty"`
	// Changes (sync) asks for the changes to messages at or below
	// LastMsgID that the client missed (see ServerFrame.Changes).
	Changes bool `json:"changes,omitempty"`

	// conversations: Since, and the page after Before and
	// BeforeConversation (the last entry of the page before: its
	// latestTime and conversation)
	Since              int64  `json:"since,omitempty"`
	Before             int64  `json:"before,omitempty"`
	BeforeConversation string `json:"beforeConversation,omitempty"`

	// groups: the page after this group id (the last of the page before)
	After string `json:"after,omitempty"`

	// mute (Conversation too): Unix ms; 0 or absent for no end
	Until int64 `json:"until,omitempty"`

	// group_create (Name, Accounts), group_add and group_remove (Group,
	// Accounts), presence (Accounts)
	Name     string   `json:"name,omitempty"`
	Accounts []string `json:"accounts,omitempty"`
}

// Message is an accepted message as clients see it.
type Message struct {
	MsgID        int64  `json:"msgId"`
	MessageID    string `json:"messageId"`
	ClientMsgID  string `json:"clientMsgId"`
	Conversation string `json:"conversation"`
	From         string `json:"from"`
	Device       string `json:"device"`
	Kind         string `json:"kind"`
	Body         string `json:"body"`
	// ServerTime is Unix milliseconds.
	ServerTime int64 `json:"serverTime"`
	// EditedAt is when the body was last edited (Unix ms), absent if never.
	EditedAt int64 `json:"editedAt,omitempty"`
	// Deleted marks a tombstone: the message was deleted for everyone and
	// has no body.
	Deleted bool `json:"deleted,omitempty"`
}

// Cursor is where a client stands in one conversation: the time of its last
// sync and the last msgid it holds.
type Cursor struct {
	LastTime  int64 `json:"lastTime"`
	LastMsgID int64 `json:"lastMsgId"`
}

// ConversationInfo is one row of the conversation list.
type ConversationInfo struct {
	Conversation string `json:"conversation"`
	// Kind is "direct" or "group".
	Kind string `json:"kind"`
	// Peer is the other account of a direct conversation.
	Peer string `json:"peer,omitempty"`
	// Group is the group of a group conversation.
	Group       string `json:"group,omitempty"`
	LatestMsgID int64  `json:"latestMsgId"`
	LatestTime  int64  `json:"latestTime"`
	// ReadMsgID is the listing account's read cursor (absent: nothing read).
	ReadMsgID int64 `json:"readMsgId,omitempty"`
	// Unread counts the messages after ReadMsgID the account did not send.
	Unread int64 `json:"unread,omitempty"`
	// Muted and MutedUntil are the listing account's mute of the
	// conversation (absent: not muted).
	Muted      bool  `json:"muted,omitempty"`
	MutedUntil int64 `json:"mutedUntil,omitempty"`
}

// GroupInfo describes a group.
type GroupInfo struct {
	Group   string   `json:"group"`
	Name    string   `json:"name"`
	Owner   string   `json:"owner"`
	Members []string `json:"members"`
}

// ServerFrame is any frame the server writes. Only the fields of its Type
// are set; docs/protocol.md lists them per type.
type ServerFrame struct {
	ID   string `json:"id,omitempty"`
	Type string `json:"type"`

	// error
	Code         string `json:"code,omitempty"`
	Error        string `json:"error,omitempty"`
	RetryAfterMs int64  `json:"retryAfterMs,omitempty"`

	// welcome, renewed: the lease ("timelife") is how long the connection
	// may live unless renewed; HeartbeatMs is the longest silence allowed.
	UniqueID    string `json:"uniqueId,omitempty"`
	LeaseMs     int64  `json:"leaseMs,omitempty"`
	LeaseUntil  int64  `json:"leaseUntil,omitempty"`
	HeartbeatMs int64  `json:"heartbeatMs,omitempty"`
	ServerTime  int64  `json:"serverTime,omitempty"`

	// ack (ServerTime too)
	MsgID        int64  `json:"msgId,omitempty"`
	MessageID    string `json:"messageId,omitempty"`
	Conversation string `json:"conversation,omitempty"`
	Duplicate    bool   `json:"duplicate,omitempty"`

	// message (push): PrevMsgID is the conversation's previous msgid where
	// the server knows it, 0 where it does not.
	PrevMsgID int64    `json:"prevMsgId,omitempty"`
	Message   *Message `json:"message,omitempty"`

	// edited, deleted (pushes; Conversation and MsgID too): the message's
	// new body and when it was edited, or when it was deleted.
	Body      string `json:"body,omitempty"`
	EditedAt  int64  `json:"editedAt,omitempty"`
	DeletedAt int64  `json:"deletedAt,omitempty"`

	// messages (sync). GoneThrough, when set, is the last msgid that the
	// history retention removed: the messages after the request's
	// lastMsgId up to and including it are gone for good.
	Messages    []Message `json:"messages,omitempty"`
	Source      string    `json:"source,omitempty"`
	HasMore     bool      `json:"hasMore,omitempty"`
	GoneThrough int64     `json:"goneThrough,omitempty"`
	Next        *Cursor   `json:"next,omitempty"`
	// Changes, when the sync asked for them, are the latest forms of the
	// messages at or below the request's lastMsgId changed after it, in
	// the order of the changes; ChangesMore says they are not all there.
	Changes     []Message `json:"changes,omitempty"`
	ChangesMore bool      `json:"changesMore,omitempty"`

	// conversation_list
	Conversations []ConversationInfo `json:"conversations,omitempty"`

	// group, group_list
	Group  *GroupInfo  `json:"group,omitempty"`
	Groups []GroupInfo `json:"groups,omitempty"`

	// read_state, read (push), reader_count: see reads.go. MsgID and
	// Conversation too.
	Account   string   `json:"account,omitempty"`
	ReadMsgID int64    `json:"readMsgId,omitempty"`
	Unread    int64    `json:"unread,omitempty"`
	Count     int      `json:"count,omitempty"`
	Of        int      `json:"of,omitempty"`
	Accounts  []string `json:"accounts,omitempty"`

	// presence_state; presence (push: Account too): see presence.go.
	Presence []PresenceInfo `json:"presence,omitempty"`
	Online   bool           `json:"online,omitempty"`
	LastSeen int64          `json:"lastSeen,omitempty"`
	// mute_state (Conversation too)
	*Mute
}
