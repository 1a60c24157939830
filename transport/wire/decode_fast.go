package wire

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/parley-chat/parley/domain"
)

// decodeFast reads frame into r when it has the plain shape clients send:
// one object whose keys are Request's, spelled exactly, each at most once,
// whose strings are valid UTF-8 with JSON's escapes but no \u escape of a
// surrogate (str), whose numbers are integers, and whose accounts are an
// array of strings without escapes. It reports false for anything
// else, and encoding/json decodes the frame instead, with its
// case-insensitive keys, surrogate escapes, nulls, ignored fields and errors: the
// Request is the same either way (FuzzDecodeFast checks it), only cheaper
// for the common frame. r must be zero; on false it is left part-filled.
func decodeFast(frame []byte, r *Request) bool {
	d := fastDecoder{b: frame}
	return d.object(func(key []byte) (uint32, bool) { return d.field(key, r) }) && d.end()
}

type fastDecoder struct {
	b []byte
	i int
}

// field reads the value of key into r, reporting the key's bit.
func (d *fastDecoder) field(key []byte, r *Request) (uint32, bool) {
	switch string(key) {
	case "id":
		return 1 << 0, d.str(&r.ID)
	case "type":
		return 1 << 1, d.common(&r.Type)
	case "token":
		return 1 << 2, d.str(&r.Token)
	case "to":
		return 1 << 3, d.str(&r.To)
	case "group":
		return 1 << 4, d.str(&r.Group)
	case "clientMsgId":
		return 1 << 5, d.str(&r.ClientMsgID)
	case "kind":
		return 1 << 6, d.common(&r.Kind)
	case "body":
		return 1 << 7, d.str(&r.Body)
	case "retry":
		return 1 << 8, d.boolean(&r.Retry)
	case "conversation":
		return 1 << 9, d.str(&r.Conversation)
	case "msgId":
		return 1 << 10, d.int(&r.MsgID)
	case "lastTime":
		return 1 << 11, d.int(&r.LastTime)
	case "lastMsgId":
		return 1 << 12, d.int(&r.LastMsgID)
	case "limit":
		var n int64
		ok := d.int(&n)
		r.Limit = int(n)
		return 1 << 13, ok && int64(r.Limit) == n
	case "changes":
		return 1 << 14, d.boolean(&r.Changes)
	case "since":
		return 1 << 15, d.int(&r.Since)
	case "until":
		return 1 << 16, d.int(&r.Until)
	case "name":
		return 1 << 17, d.str(&r.Name)
	case "accounts":
		return 1 << 18, d.strings(&r.Accounts)
	case "before":
		return 1 << 19, d.int(&r.Before)
	case "beforeConversation":
		return 1 << 20, d.str(&r.BeforeConversation)
	}
	return 0, false
}

func (d *fastDecoder) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

// skipSpace skips JSON's whitespace (not Unicode's).
func (d *fastDecoder) skipSpace() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// byte skips whitespace and then c.
func (d *fastDecoder) byte(c byte) bool {
	d.skipSpace()
	if d.peek() != c {
		return false
	}
	d.i++
	return true
}

// end reports whether only whitespace is left.
func (d *fastDecoder) end() bool {
	d.skipSpace()
	return d.i == len(d.b)
}

// rawString reads a string without escapes or control characters, in
// valid UTF-8, returning its bytes (not a copy).
func (d *fastDecoder) rawString() ([]byte, bool) {
	if d.peek() != '"' {
		return nil, false
	}
	start := d.i + 1
	ascii := true
	for j := start; j < len(d.b); j++ {
		c := d.b[j]
		switch {
		case c == '"':
			s := d.b[start:j]
			if !ascii && !utf8.Valid(s) {
				return nil, false // encoding/json replaces invalid bytes
			}
			d.i = j + 1
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// str reads a string value: plain, or with JSON's escapes (the quotes,
// ampersands, angle brackets and line breaks of chat text, as encoders
// write them), decoded as encoding/json does. A \u escape of a surrogate
// is left to encoding/json, with its pairs and replacements.
// commonValues are the strings nearly every request repeats: its type and
// the default kind.
var commonValues = func() map[string]string {
	m := map[string]string{domain.DefaultKind: domain.DefaultKind}
	for _, t := range []string{TypeHello, TypeRenew, TypePing, TypeSend, TypeSync, TypeConversations, TypeGroupCreate,
		TypeGroupAdd, TypeGroupRemove, TypeGroups, TypeRead, TypeReaders, TypeEdit, TypeDelete, TypeMute, TypeUnmute,
		TypePresence, TypeTyping} {
		m[t] = t
	}
	return m
}()

// common is str for a field whose value is most often one of
// commonValues: those are not allocated again.
func (d *fastDecoder) common(dst *string) bool {
	if s, ok := d.rawString(); ok {
		if c, ok := commonValues[string(s)]; ok {
			*dst = c
		} else {
			*dst = string(s)
		}
		return true
	}
	return d.str(dst)
}

func (d *fastDecoder) str(dst *string) bool {
	if s, ok := d.rawString(); ok {
		*dst = string(s)
		return true
	}
	if d.peek() != '"' {
		return false
	}
	out := make([]byte, 0, 64)
	ascii := true
	for j := d.i + 1; j < len(d.b); j++ {
		c := d.b[j]
		switch {
		case c == '"':
			if !ascii && !utf8.Valid(out) {
				return false // encoding/json replaces invalid bytes
			}
			*dst, d.i = string(out), j+1
			return true
		case c < 0x20:
			return false
		case c >= utf8.RuneSelf:
			ascii = false
			out = append(out, c)
		case c != '\\':
			out = append(out, c)
		case j+1 == len(d.b):
			return false
		default:
			j++
			switch e := d.b[j]; e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				if j+4 >= len(d.b) {
					return false
				}
				r, ok := escapedRune(d.b[j+1 : j+5])
				if !ok || utf16.IsSurrogate(r) {
					return false
				}
				out = utf8.AppendRune(out, r)
				j += 4
			default:
				return false
			}
		}
	}
	return false
}

func (d *fastDecoder) boolean(dst *bool) bool {
	switch {
	case len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "true":
		*dst, d.i = true, d.i+4
	case len(d.b)-d.i >= 5 && string(d.b[d.i:d.i+5]) == "false":
		*dst, d.i = false, d.i+5
	default:
		return false
	}
	return true
}

// int reads an integer in JSON's grammar (no leading zeros, no fraction or
// exponent) that fits an int64.
func (d *fastDecoder) int(dst *int64) bool {
	start := d.i
	if d.peek() == '-' {
		d.i++
	}
	digits := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	if n := d.i - digits; n == 0 || n > 1 && d.b[digits] == '0' {
		return false
	}
	if c := d.peek(); c == '.' || c == 'e' || c == 'E' {
		return false
	}
	v, err := strconv.ParseInt(string(d.b[start:d.i]), 10, 64)
	*dst = v
	return err == nil
}

// strings reads an array of plain strings; an empty array is an empty,
// not a nil, slice, as encoding/json makes it.
func (d *fastDecoder) strings(dst *[]string) bool {
	out := []string{}
	if !d.array(func() bool {
		s, ok := d.rawString()
		out = append(out, string(s))
		return ok
	}) {
		return false
	}
	*dst = out
	return true
}

// object reads one object whose every key field reads (reporting the
// key's bit), each key at most once; it stops after the closing brace.
func (d *fastDecoder) object(field func(key []byte) (uint32, bool)) bool {
	if !d.byte('{') {
		return false
	}
	var seen uint32
	if d.skipSpace(); d.peek() == '}' {
		d.i++
		return true
	}
	for {
		key, ok := d.rawString()
		if !ok || !d.byte(':') {
			return false
		}
		d.skipSpace()
		bit, ok := field(key)
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		d.skipSpace()
		switch d.peek() {
		case ',':
			d.i++
			d.skipSpace()
		case '}':
			d.i++
			return true
		default:
			return false
		}
	}
}

// array reads an array whose every element elem reads; it stops after
// the closing bracket.
func (d *fastDecoder) array(elem func() bool) bool {
	if d.peek() != '[' {
		return false
	}
	d.i++
	if d.skipSpace(); d.peek() == ']' {
		d.i++
		return true
	}
	for {
		if !elem() {
			return false
		}
		d.skipSpace()
		switch d.peek() {
		case ',':
			d.i++
			d.skipSpace()
		case ']':
			d.i++
			return true
		default:
			return false
		}
	}
}
