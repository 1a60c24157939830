package events

import (
	"encoding/base64"
	"strconv"
)

// encodeMessageSentFast writes e as encoding/json writes it (the fields in
// their order, the empty optional ones left out, no whitespace) when none
// of its strings needs escaping — the common case: ids keep to a small
// charset, and a sealed record has no body — and reports false for
// anything else, which encoding/json then writes. The bytes are the same
// either way (FuzzEncodeMessageSentFast checks it), only cheaper for the
// record every send appends.
func encodeMessageSentFast(e MessageSent) ([]byte, bool) {
	b := make([]byte, 0, 160+len(e.MessageID)+len(e.ClientMsgID)+len(e.Conversation)+len(e.SenderAccount)+
		len(e.SenderDevice)+len(e.Kind)+len(e.Body)+len(e.BodyKey)+base64.StdEncoding.EncodedLen(len(e.SealedBody)))
	ok := true
	str := func(key, s string) {
		b = append(b, key...)
		b = append(b, '"')
		b = append(b, s...)
		b = append(b, '"')
		ok = ok && plain(s)
	}
	str(`{"messageId":`, e.MessageID)
	str(`,"clientMsgId":`, e.ClientMsgID)
	str(`,"conversation":`, e.Conversation)
	str(`,"senderAccount":`, e.SenderAccount)
	str(`,"senderDevice":`, e.SenderDevice)
	str(`,"kind":`, e.Kind)
	if e.Body != "" {
		str(`,"body":`, e.Body)
	}
	b = strconv.AppendInt(append(b, `,"serverTime":`...), e.ServerTime, 10)
	if e.BodyKey != "" {
		str(`,"bodyKey":`, e.BodyKey)
	}
	if len(e.SealedBody) > 0 {
		b = append(b, `,"sealedBody":"`...)
		b = base64.StdEncoding.AppendEncode(b, e.SealedBody)
		b = append(b, '"')
	}
	return append(b, '}'), ok
}

// plain reports whether encoding/json writes s as it is, between quotes:
// printable ASCII without the characters it escapes (quote, backslash and,
// for HTML, <, > and &).
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
