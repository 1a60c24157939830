package wire

// Typing (docs/protocol.md, "Typing"): a typing request is not written to
// the log; the other participants' online devices get a typing push.
const (
	// TypeTyping is the request: Conversation.
	TypeTyping = "typing"
	// TypeTypingSent replies to typing.
	TypeTypingSent = "typing_sent"
	// TypeTypingPush is the push: Conversation, Account.
	TypeTypingPush = "typing"
)

// AppendTypingPush appends the typing frame of account in conversation.
func AppendTypingPush(b []byte, conversation, account string) []byte {
	b = grow(b, 48+len(conversation)+len(account))
	b = append(b, `{"type":"typing","conversation":`...)
	b = appendString(b, conversation)
	b = append(b, `,"account":`...)
	b = appendString(b, account)
	return append(b, '}')
}
