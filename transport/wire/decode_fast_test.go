package wire

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeFast holds the fast decoder to encoding/json: whatever frame
// it accepts, encoding/json accepts too and reads as the same Request.
func FuzzDecodeFast(f *testing.F) {
	for _, s := range []string{
		`{"id":"1","type":"ping"}`,
		string(sendFrame),
		`{"id":"s","type":"send","group":"g1","clientMsgId":"c1","body":"é😀 hi","retry":true}`,
		`{"id":"y","type":"sync","conversation":"d:a:b","lastTime":1700000000000,"lastMsgId":281474976710656,"limit":50,"changes":false}`,
		`{"id":"c","type":"conversations","since":-0}`,
		`{"id":"m","type":"mute","conversation":"d:a:b","until":-9223372036854775808}`,
		`{"id":"m","type":"mute","until":9223372036854775807}`,
		`{"id":"m","type":"mute","until":9223372036854775808}`,
		`{"id":"g","type":"group_create","name":"n","accounts":["a","b"]}`,
		` { "id" : "g" , "type":"group_add" ,"accounts": [ ] } `,
		`{"id":"1","id":"2"}`,
		`{"ID":"1","type":"ping"}`,
		`{"id":"a\"b"}`,
		`{"id":null}`,
		`{"limit":1.5}`,
		`{"limit":01}`,
		`{"retry":truex}`,
		`{}`,
		`{"id":"` + strings.Repeat("x", 70) + `"}`,
		"{\"body\":\"\xff\"}",
		`{"id":"1","type":"send","body":"say \"hi\" \u0026 \u003c3\nR\u0026D caf\u00e9 \/ \\ \t\b\f\r"}`,
		`{"body":"\ud83d\ude00 pair"}`,
		`{"body":"\ud83d lone"}`,
		`{"body":"\u00zz"}`,
		`{"body":"\u12"}`,
		`{"body":"ends in \`,
		`{"body":"\x"}`,
		"{\"body\":\"\\u00e9\xc3\"}",
		"{\"body\":\"\xc3\\u00a9\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) { sameAsEncodingJSON(t, frame, decodeFast) })
}

// sameAsEncodingJSON fails t when fast takes frame and encoding/json
// refuses it or reads it otherwise.
func sameAsEncodingJSON[T any](t *testing.T, frame []byte, fast func([]byte, *T) bool) {
	t.Helper()
	var got T
	if !fast(frame, &got) {
		return
	}
	var want T
	if err := json.Unmarshal(frame, &want); err != nil {
		t.Fatalf("the fast path took %q, which encoding/json refuses: %v", frame, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: fast %+v, encoding/json %+v", frame, got, want)
	}
}

// The common frames take the fast path; the others still decode, through
// encoding/json.
func TestDecodeFastTakesPlainFrames(t *testing.T) {
	for _, s := range []string{
		string(sendFrame),
		`{"id":"y","type":"sync","conversation":"d:a:b","lastTime":1,"lastMsgId":2,"limit":3}`,
		`{"id":"g","type":"group_create","name":"n","accounts":["a","b"]}`,
		`{"id":"1","type":"send","body":"line\nbreak, \"quoted\", R\u0026D \u003c3"}`,
	} {
		var r Request
		if !decodeFast([]byte(s), &r) {
			t.Errorf("%s: not taken by the fast path", s)
		}
	}
	for _, s := range []string{
		`{"id":"1","type":"send","body":"\ud83d\ude00 a surrogate pair"}`,
		`{"ID":"1","TYPE":"ping"}`,
		`{"id":"1","type":"ping","extra":{"x":1}}`,
	} {
		var r Request
		if decodeFast([]byte(s), &r) {
			t.Errorf("%s: taken by the fast path", s)
		}
		if _, err := DecodeRequest([]byte(s)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
}
