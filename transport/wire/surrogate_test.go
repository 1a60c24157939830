package wire

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestHasLoneSurrogate(t *testing.T) {
	for text, want := range map[string]bool{
		`{"body":"plain"}`:                   false,
		`{"body":"\ud83d\ude00"}`:            false, // a pair: 😀
		`{"body":"\uD83D\uDE00 and \u00e9"}`: false,
		`{"body":"\\ud800"}`:                 false, // an escaped backslash, then text
		`{"body":"a\ud800b"}`:                true,
		`{"body":"\udc00"}`:                  true,
		`{"body":"\ud800\u0041"}`:            true,
		`{"body":"\ud800\\"}`:                true,
		`{"body":"\ud800`:                    true,
		`{"body":"\ude00\ud83d"}`:            true,
		`{"body":"ok \ud83d\ude00 \udbff"}`:  true,
		`{"body":"\u12"}`:                    false, // malformed: for the decoder
	} {
		if got := HasLoneSurrogate([]byte(text)); got != want {
			t.Errorf("HasLoneSurrogate(%s) = %v, want %v", text, got, want)
		}
	}
}

// Whatever HasLoneSurrogate passes, encoding/json decodes without putting
// a U+FFFD of its own in a string.
func FuzzHasLoneSurrogate(f *testing.F) {
	for _, s := range []string{`"\ud83d\ude00"`, `"a\ud800b"`, `"\\ud800"`, `"\u00e9"`, `"\ufffd"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		var s string
		if !utf8.ValidString(text) || json.Unmarshal([]byte(text), &s) != nil || HasLoneSurrogate([]byte(text)) {
			return
		}
		if strings.Count(s, "\ufffd") > strings.Count(text, "\ufffd")+strings.Count(strings.ToLower(text), `\ufffd`) {
			t.Fatalf("%s decoded to %q: a replacement character the text did not hold", text, s)
		}
	})
}
