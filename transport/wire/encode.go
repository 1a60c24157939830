package wire

import (
	"strconv"
	"unicode/utf8"

	"github.com/parley-chat/parley/domain"
)

// The two frames that carry messages — a push and a sync reply — are the
// server's hottest output: a sync reply holds up to 200 messages. They are
// encoded here by appending to a buffer, without reflection. The output is
// the JSON encoding/json would give for the same ServerFrame (field order
// aside), which encode_test.go checks, fuzz included.

// AppendPush appends the push frame of m.
func AppendPush(b []byte, m *Message, prev int64) []byte {
	b = grow(b, 64+sizeOf(m))
	b = append(b, `{"type":"message"`...)
	if prev != 0 {
		b = append(b, `,"prevMsgId":`...)
		b = strconv.AppendInt(b, prev, 10)
	}
	b = append(b, `,"message":`...)
	b = AppendMessage(b, m)
	return append(b, '}')
}

// AppendMessages appends a sync reply ("messages") with its cursor,
// goneThrough when the history retention removed messages after the
// request's cursor (0: nothing gone), and the changes the sync asked for.
func AppendMessages(b []byte, id, conversation string, msgs []Message, source string, hasMore bool, goneThrough int64, next Cursor,
	changes []Message, changesMore bool) []byte {
	return appendMessagesFrame(b, id, conversation, msgs, nil, source, hasMore, goneThrough, next, changes, changesMore)
}

// AppendEncodedMessages is AppendMessages for a page whose messages are
// already encoded, each as AppendMessage encodes it (EncodeMessage): the
// encodings are appended as they are, so the frame is byte for byte the
// one AppendMessages makes of the same messages.
func AppendEncodedMessages(b []byte, id, conversation string, encoded [][]byte, source string, hasMore bool, goneThrough int64, next Cursor,
	changes []Message, changesMore bool) []byte {
	return appendMessagesFrame(b, id, conversation, nil, encoded, source, hasMore, goneThrough, next, changes, changesMore)
}

// appendMessagesFrame appends a sync reply whose page is msgs, or encoded
// when msgs is empty.
func appendMessagesFrame(b []byte, id, conversation string, msgs []Message, encoded [][]byte, source string, hasMore bool, goneThrough int64, next Cursor,
	changes []Message, changesMore bool) []byte {
	n := 200 + len(id) + len(conversation)
	for i := range msgs {
		n += sizeOf(&msgs[i])
	}
	for _, e := range encoded {
		n += len(e) + 1
	}
	for i := range changes {
		n += sizeOf(&changes[i])
	}
	b = grow(b, n)
	b = append(b, `{"id":`...)
	b = appendString(b, id)
	b = append(b, `,"type":"messages","conversation":`...)
	b = appendString(b, conversation)
	if len(msgs) > 0 {
		b = appendList(b, `,"messages":`, msgs)
	} else if len(encoded) > 0 {
		b = append(b, `,"messages":[`...)
		for i, e := range encoded {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, e...)
		}
		b = append(b, ']')
	}
	if source != "" {
		b = append(b, `,"source":`...)
		b = appendString(b, source)
	}
	if hasMore {
		b = append(b, `,"hasMore":true`...)
	}
	if goneThrough != 0 {
		b = append(b, `,"goneThrough":`...)
		b = strconv.AppendInt(b, goneThrough, 10)
	}
	b = appendList(b, `,"changes":`, changes)
	if changesMore {
		b = append(b, `,"changesMore":true`...)
	}
	b = append(b, `,"next":{"lastTime":`...)
	b = strconv.AppendInt(b, next.LastTime, 10)
	b = append(b, `,"lastMsgId":`...)
	b = strconv.AppendInt(b, next.LastMsgID, 10)
	return append(b, "}}"...)
}

// appendList appends field and msgs as a JSON array, nothing when msgs is
// empty (the field is omitted).
func appendList(b []byte, field string, msgs []Message) []byte {
	if len(msgs) == 0 {
		return b
	}
	b = append(b, field...)
	b = append(b, '[')
	for i := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendMessage(b, &msgs[i])
	}
	return append(b, ']')
}

// AppendMessage appends m as a JSON object.
func AppendMessage(b []byte, m *Message) []byte {
	b = append(b, `{"msgId":`...)
	b = strconv.AppendInt(b, m.MsgID, 10)
	b = append(b, `,"messageId":`...)
	b = appendString(b, m.MessageID)
	b = append(b, `,"clientMsgId":`...)
	b = appendString(b, m.ClientMsgID)
	b = append(b, `,"conversation":`...)
	b = appendString(b, m.Conversation)
	b = append(b, `,"from":`...)
	b = appendString(b, m.From)
	b = append(b, `,"device":`...)
	b = appendString(b, m.Device)
	b = append(b, `,"kind":`...)
	b = appendString(b, m.Kind)
	b = append(b, `,"body":`...)
	b = appendString(b, m.Body)
	b = append(b, `,"serverTime":`...)
	b = strconv.AppendInt(b, m.ServerTime, 10)
	if m.EditedAt != 0 {
		b = append(b, `,"editedAt":`...)
		b = strconv.AppendInt(b, m.EditedAt, 10)
	}
	if m.Deleted {
		b = append(b, `,"deleted":true`...)
	}
	return append(b, '}')
}

// sizeOf estimates m's encoding, so that one allocation holds a frame.
func sizeOf(m *Message) int {
	return 200 + len(m.MessageID) + len(m.ClientMsgID) + len(m.Conversation) + len(m.From) + len(m.Device) + len(m.Kind) + len(m.Body) + len(m.Body)/8
}

// grow makes room for n more bytes in one allocation.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n)
	copy(nb, b)
	return nb
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json does
// (HTML characters, U+2028 and U+2029 included; invalid UTF-8 becomes
// U+FFFD).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// MaxMessageBytes bounds the encoding of one message object: a body of
// domain.MaxBodyBytes that JSON escapes to six bytes a byte, plus ids and
// times.
const MaxMessageBytes = 6*domain.MaxBodyBytes + 4096

// EncodedLen is the exact length of AppendMessage's encoding of m.
func EncodedLen(m *Message) int {
	const fixed = len(`{"msgId":,"messageId":,"clientMsgId":,"conversation":,"from":,"device":,"kind":,"body":,"serverTime":}`)
	n := fixed + intLen(m.MsgID) + intLen(m.ServerTime) + StringLen(m.MessageID) + StringLen(m.ClientMsgID) +
		StringLen(m.Conversation) + StringLen(m.From) + StringLen(m.Device) + StringLen(m.Kind) + StringLen(m.Body)
	if m.EditedAt != 0 {
		n += len(`,"editedAt":`) + intLen(m.EditedAt)
	}
	if m.Deleted {
		n += len(`,"deleted":true`)
	}
	return n
}

// CutPage cuts a page of a sync to budget bytes of encoded messages (see
// FitMessages): a cut page has more messages after it, and its cursor is
// its last message, so the next page starts right after it. more and next
// are the page's own before the cut.
func CutPage(msgs []Message, budget int, more bool, next int64) ([]Message, bool, int64) {
	n := FitMessages(msgs, budget)
	if n == len(msgs) {
		return msgs, more, next
	}
	return msgs[:n], true, msgs[n-1].MsgID
}

// CutChanges cuts the changes of a sync to half of budget bytes of encoded
// messages (at least one), so that the page of messages keeps the other
// half; a cut list has more after it. rest is what is left of budget for
// the page.
func CutChanges(changes []Message, budget int, more bool) (cut []Message, cutMore bool, rest int) {
	n := FitMessages(changes, budget/2)
	if n < len(changes) {
		changes, more = changes[:n], true
	}
	used := 0
	for i := range changes {
		used += EncodedLen(&changes[i]) + 1
	}
	return changes, more, budget - used
}

// CutEncodedPage is CutPage for a page of encoded messages (see
// AppendEncodedMessages); msgID tells the msgid of the page's i-th
// message, the cursor of a cut page.
func CutEncodedPage(encoded [][]byte, msgID func(i int) int64, budget int, more bool, next int64) ([][]byte, bool, int64) {
	n := FitEncoded(encoded, budget)
	if n == len(encoded) {
		return encoded, more, next
	}
	return encoded[:n], true, msgID(n - 1)
}

// FitEncoded is FitMessages for encoded messages.
func FitEncoded(encoded [][]byte, budget int) int {
	used := 0
	for i, e := range encoded {
		used += len(e) + 1
		if used > budget && i > 0 {
			return i
		}
	}
	return len(encoded)
}

// FitMessages is how many of msgs, from the first, fit in budget bytes of
// encoded messages (separators included) — at least one, so that a page
// always moves its reader on.
func FitMessages(msgs []Message, budget int) int {
	used := 0
	for i := range msgs {
		used += EncodedLen(&msgs[i]) + 1
		if used > budget && i > 0 {
			return i
		}
	}
	return len(msgs)
}

func intLen(n int64) int {
	var buf [20]byte
	return len(strconv.AppendInt(buf[:0], n, 10))
}

// StringLen is the length of s encoded as a JSON string the way Parley
// writes it (appendString), quotes included: an escaped character, such
// as '<', counts six bytes.
func StringLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&':
				n++
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f':
				n += 2
			default:
				n += 6
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1, r == '\u2028', r == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}
