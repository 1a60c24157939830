package events

import (
	"bytes"
	"encoding/base64"
	"strconv"
	"unicode/utf8"

	"github.com/parley-chat/parley/domain"
)

// decodeMessageSentFast reads a MessageSent in the form Encode writes it
// (encoding/json's: the fields in their order, the empty optional ones
// left out, no whitespace) when none of its strings holds an escape. It
// reports false for anything else, and encoding/json reads the payload
// instead: the event is the same either way (FuzzDecodeMessageSentFast
// checks it), only cheaper for the records the log is made of.
func decodeMessageSentFast(p []byte) (MessageSent, bool) {
	var e MessageSent
	d := canonical{b: p}
	ok := d.lit(`{"messageId":`) && d.str(&e.MessageID) &&
		d.lit(`,"clientMsgId":`) && d.str(&e.ClientMsgID) &&
		d.lit(`,"conversation":`) && d.str(&e.Conversation) &&
		d.lit(`,"senderAccount":`) && d.str(&e.SenderAccount) &&
		d.lit(`,"senderDevice":`) && d.str(&e.SenderDevice) &&
		d.lit(`,"kind":`) && d.kind(&e.Kind) &&
		(!d.has(`,"body":`) || d.lit(`,"body":`) && d.str(&e.Body)) &&
		d.lit(`,"serverTime":`) && d.int(&e.ServerTime) &&
		(!d.has(`,"bodyKey":`) || d.lit(`,"bodyKey":`) && d.str(&e.BodyKey)) &&
		(!d.has(`,"sealedBody":`) || d.lit(`,"sealedBody":`) && d.base64(&e.SealedBody)) &&
		d.lit(`}`) && d.i == len(d.b)
	return e, ok
}

// canonical reads JSON as encoding/json writes it, front to back.
type canonical struct {
	b []byte
	i int
}

func (d *canonical) has(s string) bool { return bytes.HasPrefix(d.b[d.i:], []byte(s)) }

func (d *canonical) lit(s string) bool {
	if !d.has(s) {
		return false
	}
	d.i += len(s)
	return true
}

// raw reads a string without escapes or control characters, in valid
// UTF-8 (encoding/json would replace invalid bytes), returning its bytes.
func (d *canonical) raw() ([]byte, bool) {
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return nil, false
	}
	start := d.i + 1
	end := bytes.IndexByte(d.b[start:], '"')
	if end < 0 {
		return nil, false
	}
	s := d.b[start : start+end]
	for _, c := range s {
		if c == '\\' || c < 0x20 {
			return nil, false
		}
	}
	if !utf8.Valid(s) {
		return nil, false
	}
	d.i = start + end + 1
	return s, true
}

func (d *canonical) str(dst *string) bool {
	s, ok := d.raw()
	if ok {
		*dst = string(s)
	}
	return ok
}

// kind is str for a message kind: the default one, nearly every
// message's, is not allocated again.
func (d *canonical) kind(dst *string) bool {
	s, ok := d.raw()
	if ok {
		if string(s) == domain.DefaultKind {
			*dst = domain.DefaultKind
		} else {
			*dst = string(s)
		}
	}
	return ok
}

// base64 reads a []byte as encoding/json writes it: standard base64 in a
// string ("" is an empty, not a nil, slice).
func (d *canonical) base64(dst *[]byte) bool {
	s, ok := d.raw()
	if !ok {
		return false
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(out, s)
	if err != nil {
		return false
	}
	*dst = out[:n]
	return true
}

// int reads an integer in JSON's grammar (no leading zeros, no fraction
// or exponent) that fits an int64.
func (d *canonical) int(dst *int64) bool {
	start := d.i
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	digits := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	if n := d.i - digits; n == 0 || n > 1 && d.b[digits] == '0' {
		return false
	}
	v, err := strconv.ParseInt(string(d.b[start:d.i]), 10, 64)
	*dst = v
	return err == nil
}
