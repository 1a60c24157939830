package wire

import "bytes"

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
		h, ok := hex4(b[i+2:])
		switch {
		case !ok:
			return false // malformed: the JSON decoder refuses it
		case h >= 0xDC00 && h <= 0xDFFF:
			return true // a low half first
		case h >= 0xD800 && h <= 0xDBFF:
			rest := b[i+6:]
			if len(rest) < 2 || rest[0] != '\\' || rest[1] != 'u' {
				return true
			}
			if l, ok := hex4(rest[2:]); !ok || l < 0xDC00 || l > 0xDFFF {
				return true
			}
			b = rest[6:]
		default:
			b = b[i+6:]
		}
	}
}

// hex4 reads four hex digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
