package wire

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleMessage(body string) Message {
	return Message{MsgID: 1<<48 + 42, MessageID: "0190f3c2-8d7e-7000-8000-000000000000", ClientMsgID: "c-1",
		Conversation: "d:alice:bob", From: "alice", Device: "phone", Kind: "text", Body: body, ServerTime: 1795714619000}
}

// The hand encoders give exactly what encoding/json gives for the same
// frame, compared as bytes after a round trip through encoding/json.
func checkSame(t *testing.T, got []byte, want ServerFrame) {
	t.Helper()
	var a, b ServerFrame
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("not JSON: %v: %q", err, got)
	}
	std, _ := json.Marshal(want)
	if err := json.Unmarshal(std, &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("decoded differently:\n got %+v\nwant %+v", a, b)
	}
	// Escaping matches too: strings encode to the same bytes.
	if strings.Contains(string(std), "body") {
		gotBody, _ := json.Marshal(a.Message)
		stdBody, _ := json.Marshal(b.Message)
		if string(gotBody) != string(stdBody) {
			t.Fatalf("re-encoded differently")
		}
	}
}

func TestAppendPushAndMessagesMatchEncodingJSON(t *testing.T) {
	bodies := []string{"", "hello", `quote " backslash \ slash /`, "tab\tnl\ncr\r", "\x00\x01\x1f", "<b>&amp;</b>",
		"héllo wörld 中文 🎉", "line\u2028sep\u2029", "bad \xff utf8", strings.Repeat("x", 16<<10)}
	for _, body := range bodies {
		m := sampleMessage(body)
		for _, prev := range []int64{0, 1<<48 + 41} {
			checkSame(t, AppendPush(nil, &m, prev), ServerFrame{Type: TypePush, PrevMsgID: prev, Message: &m})
		}
		// Compare the encodings of the string itself, byte for byte.
		std, _ := json.Marshal(body)
		if got := appendString(nil, body); string(got) != string(std) {
			t.Errorf("appendString(%q) = %s, encoding/json gives %s", body, got, std)
		}
	}
	msgs := []Message{sampleMessage("a"), sampleMessage("b <c>")}
	changed := sampleMessage("")
	changed.Deleted = true
	edited := sampleMessage("edited \"body\"")
	edited.EditedAt = 1795714619002
	for _, tc := range []struct {
		msgs        []Message
		source      string
		hasMore     bool
		gone        int64
		changes     []Message
		changesMore bool
	}{{msgs, "cache", true, 0, nil, false}, {nil, "store", false, 0, nil, false}, {msgs[:1], "store", false, 0, nil, false},
		{msgs, "store", true, 1<<48 + 5, nil, false}, {nil, "store", false, 3, nil, false},
		{msgs, "cache", false, 0, []Message{changed, edited}, false}, {nil, "store", false, 0, []Message{edited}, true}} {
		next := Cursor{LastTime: 1795714619001, LastMsgID: 7}
		got := AppendMessages(nil, "id-\"1\"", "d:alice:bob", tc.msgs, tc.source, tc.hasMore, tc.gone, next, tc.changes, tc.changesMore)
		checkSame(t, got, ServerFrame{ID: "id-\"1\"", Type: TypeMessages, Conversation: "d:alice:bob", Messages: tc.msgs,
			Source: tc.source, HasMore: tc.hasMore, GoneThrough: tc.gone, Next: &next, Changes: tc.changes, ChangesMore: tc.changesMore})
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a", "\"\\", "\x00", "\xff\xfe", "\u2028", "<>&", "🎉"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		std, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(std) {
			t.Fatalf("appendString(%q) = %s, encoding/json gives %s", s, got, std)
		}
		if n := StringLen(s); n != len(std) {
			t.Fatalf("StringLen(%q) = %d, the encoding has %d bytes", s, n, len(std))
		}
	})
}

func BenchmarkEncodeSyncReply(b *testing.B) {
	msgs := make([]Message, 50)
	for i := range msgs {
		msgs[i] = sampleMessage("hello there, how are you doing today?")
	}
	next := Cursor{LastTime: 1795714619001, LastMsgID: 7}
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_, _ = json.Marshal(ServerFrame{ID: "1", Type: TypeMessages, Conversation: "d:alice:bob", Messages: msgs, Source: "cache", Next: &next})
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for i := 0; i < b.N; i++ {
			buf = AppendMessages(buf[:0], "1", "d:alice:bob", msgs, "cache", false, 0, next, nil, false)
		}
	})
}

// EncodedLen is exact: a page cut by bytes relies on it.
func TestEncodedLenIsExact(t *testing.T) {
	for _, body := range []string{"", "hello", "\x00\x01\x1f", "<b>&amp;</b>", "héllo 中文 🎉", "line\u2028sep\u2029",
		"bad \xff utf8", strings.Repeat("\x00", 16<<10), strings.Repeat("x", 16<<10)} {
		m := sampleMessage(body)
		if got, want := EncodedLen(&m), len(AppendMessage(nil, &m)); got != want {
			t.Errorf("EncodedLen(%.20q) = %d, the encoding has %d bytes", body, got, want)
		}
		if n := EncodedLen(&m); n > MaxMessageBytes {
			t.Errorf("a message of %d bytes is over MaxMessageBytes %d", n, MaxMessageBytes)
		}
	}
}

func TestFitMessages(t *testing.T) {
	small, big := sampleMessage("x"), sampleMessage(strings.Repeat("\x00", 16<<10))
	one := EncodedLen(&small) + 1
	tests := []struct {
		name   string
		msgs   []Message
		budget int
		want   int
	}{
		{"none", nil, 100, 0},
		{"all fit", []Message{small, small, small}, 3 * one, 3},
		{"cut by bytes", []Message{small, small, small}, 2*one + 1, 2},
		{"first always fits", []Message{big, small}, 10, 1},
		{"big after small is cut", []Message{small, big}, 1 << 10, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := FitMessages(tc.msgs, tc.budget); got != tc.want {
				t.Errorf("FitMessages = %d, want %d", got, tc.want)
			}
		})
	}
}

// The changes of a sync take at most half of the reply's budget (at least
// one change), and the page gets the rest.
func TestCutChanges(t *testing.T) {
	big := sampleMessage(strings.Repeat("x", 10<<10))
	one := EncodedLen(&big) + 1
	list := []Message{big, big, big, big, big}
	tests := []struct {
		name     string
		changes  []Message
		budget   int
		more     bool
		wantN    int
		wantMore bool
	}{
		{"all fit in half", list[:2], 4 * one, false, 2, false},
		{"cut to half", list, 4 * one, false, 2, true},
		{"more stays more", list[:1], 4 * one, true, 1, true},
		{"one even when over half", list, one, false, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, more, rest := CutChanges(tt.changes, tt.budget, tt.more)
			if len(got) != tt.wantN || more != tt.wantMore || rest != tt.budget-tt.wantN*one {
				t.Errorf("CutChanges = %d changes, %v, rest %d; want %d, %v, rest %d", len(got), more, rest, tt.wantN, tt.wantMore, tt.budget-tt.wantN*one)
			}
		})
	}
}

// retryAfterMs rounds up: a client that waits exactly that long has
// waited at least as long as the server asked.
func TestRetryAfterRoundsUp(t *testing.T) {
	for d, want := range map[time.Duration]int64{
		0:                     1,
		time.Microsecond:      1,
		10 * time.Millisecond: 10,
		16*time.Millisecond + 700*time.Microsecond: 17,
		time.Second / 3: 334,
		math.MaxInt64:   math.MaxInt64 / int64(time.Millisecond), // no wrap to 1
	} {
		if got := RetryAfter(d); got != want {
			t.Errorf("RetryAfter(%v) = %d, want %d", d, got, want)
		}
	}
}
