package wire

import (
	"bytes"
	"strconv"
	"unicode"
	"unicode/utf16"
)

// HasLoneSurrogate reports whether the JSON text b escapes half of a
// surrogate pair alone (a \uD800..\uDFFF not paired high then low), which
// is no character: encoding/json would decode it as U+FFFD, storing a
// message its sender never wrote, so such a frame is refused instead
// (bad_frame), as bytes that are not UTF-8 are. b is assumed to be JSON:
// outside strings it holds no backslash.
func HasLoneSurrogate(b []byte) bool {
	for {
		i := bytes.IndexByte(b, '\\')
		if i < 0 || i+1 >= len(b) {
			return false
		}
		if b[i+1] != 'u' {
			b = b[i+2:] // any other escape, \\ included
			continue
		}
		r, ok := escapedRune(b[i+2:])
		switch {
		case !ok:
			return false // malformed: the JSON decoder refuses it
		case !utf16.IsSurrogate(r):
			b = b[i+6:]
			continue
		}
		rest := b[i+6:]
		if len(rest) < 2 || rest[0] != '\\' || rest[1] != 'u' {
			return true
		}
		if low, ok := escapedRune(rest[2:]); !ok || utf16.DecodeRune(r, low) == unicode.ReplacementChar {
			return true // alone, a low half first, or a high half twice
		}
		b = rest[6:]
	}
}

// escapedRune reads the four hex digits of a \u escape at the start of b.
func escapedRune(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	r, err := strconv.ParseUint(string(b[:4]), 16, 32)
	return rune(r), err == nil
}
