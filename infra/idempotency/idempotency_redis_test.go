package idempotency

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
)

// What a reservation holds in Redis is read back exactly, and anything
// else stored there is refused with an error, never a panic.
func FuzzDecodeAck(f *testing.F) {
	f.Add(int64(281474976710656), "d:alice:bob", int64(1795715192859))
	f.Add(int64(1), "g:g0123456789abcdef0123456789abcdef", int64(0))
	f.Add(int64(-5), "d:a b:c", int64(-1))
	f.Fuzz(func(t *testing.T, msgid int64, conv string, ms int64) {
		id := uuid.Must(uuid.NewV7())
		if c, err := domain.ParseConversationID(conv); err == nil {
			in := Ack{MsgID: domain.MsgID(msgid), MessageID: id, Conversation: c, ServerTime: time.UnixMilli(ms)}
			out, err := decodeAck(encodeAck(in))
			if err != nil || out.MsgID != in.MsgID || out.MessageID != in.MessageID || out.Conversation != in.Conversation || !out.ServerTime.Equal(in.ServerTime) {
				t.Fatalf("round trip of %+v: %+v %v", in, out, err)
			}
		}
		// Arbitrary stored text.
		raw := strconv.FormatInt(msgid, 10) + " " + conv + " " + strconv.FormatInt(ms, 10)
		_, _ = decodeAck(raw)
		_, _ = decodeAck(conv)
		if parts, err := decodeParts(conv); err == nil && conv != "" {
			var back []string
			for _, p := range parts {
				back = append(back, strconv.Itoa(int(p)))
			}
			if n := len(strings.Split(conv, ",")); n != len(parts) || slices.Contains(back, "") {
				t.Fatalf("partitions %q read as %v", conv, parts)
			}
		}
	})
}
