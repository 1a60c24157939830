package ws

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/parley-chat/parley/transport/wire"
)

// encodeFrame is a client frame of opcode with a payload of n bytes
// (masked, as clients send them, unless unmasked).
func encodeFrame(opcode byte, fin bool, n int, unmasked bool) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	mask := byte(0x80)
	if unmasked {
		mask = 0
	}
	b := []byte{b0}
	switch {
	case n < 126:
		b = append(b, mask|byte(n))
	case n <= 0xFFFF:
		b = append(b, mask|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, mask|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !unmasked {
		b = append(b, 1, 2, 3, 4)
	}
	return append(b, make([]byte, n)...)
}

// scanAll scans stream cut at cuts and returns the continuation frames
// seen, or outOfRange.
func scanAll(stream []byte, cuts []int) int {
	var f frameScanner
	got := 0
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		c = min(max(c, prev), len(stream))
		k := f.scan(stream[prev:c])
		if k == outOfRange {
			return outOfRange
		}
		got += k
		prev = c
	}
	return got
}

// A 64-bit length with its top bit set, or any over the largest frame, is
// out of range wherever the stream is cut; the largest frame's is not.
func TestFrameScannerRefusesALengthOutOfRange(t *testing.T) {
	bad := []byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}
	stream := append(encodeFrame(0x0, false, 3, false), bad...)
	for cut := range len(stream) + 1 {
		if got := scanAll(stream, []int{cut}); got != outOfRange {
			t.Fatalf("cut at %d: %d, want out of range", cut, got)
		}
	}
	if got := scanAll(encodeFrame(0x1, true, wire.MaxFrameBytes, false), nil); got != 0 {
		t.Fatalf("the largest frame: %d, want 0", got)
	}
	over := encodeFrame(0x1, true, wire.MaxFrameBytes+1, false)[:14]
	if got := scanAll(over, nil); got != outOfRange {
		t.Fatalf("a frame over the largest: %d, want out of range", got)
	}
}

func TestFrameScannerCountsEveryFrame(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var stream []byte
		want := 0
		for range 1 + r.IntN(20) {
			op := []byte{0x0, 0x1, 0x2, 0x8, 0x9, 0xA}[r.IntN(6)]
			n := []int{0, 1, 125, 126, 127, 300, 65535, 65536, 70000}[r.IntN(9)]
			stream = append(stream, encodeFrame(op, r.IntN(2) == 0, n, r.IntN(4) == 0)...)
			if op == opContinuation {
				want++
			}
		}
		var cuts []int
		for range r.IntN(10) {
			cuts = append(cuts, r.IntN(len(stream)+1))
		}
		slices.Sort(cuts)
		if got := scanAll(stream, cuts); got != want {
			t.Fatalf("cut at %v: %d continuation frames, want %d", cuts, got, want)
		}
		// One byte at a time.
		var f frameScanner
		got := 0
		for i := range stream {
			k := f.scan(stream[i : i+1])
			if k == outOfRange {
				t.Fatalf("byte by byte: out of range at %d", i)
			}
			got += k
		}
		if got != want {
			t.Fatalf("byte by byte: %d continuation frames, want %d", got, want)
		}
	}
}

// FuzzFrameScanner: any bytes, cut anywhere, never panic, and a stream cut
// in two counts the same continuation frames as whole.
func FuzzFrameScanner(f *testing.F) {
	f.Add(encodeFrame(0x1, false, 10, false), 3)
	f.Add(append(encodeFrame(0x0, false, 0, false), encodeFrame(0x0, true, 200, false)...), 7)
	f.Add([]byte{0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0, 1}, 5)
	f.Add([]byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, 4)
	f.Fuzz(func(t *testing.T, stream []byte, cut int) {
		whole := scanAll(stream, nil)
		if cut < 0 {
			cut = -cut
		}
		if len(stream) > 0 {
			cut %= len(stream) + 1
		}
		if got := scanAll(stream, []int{cut}); got != whole {
			t.Fatalf("cut at %d: %v, whole: %v", cut, got, whole)
		}
	})
}

// held is the payload the data frames of the message under way announced,
// from the first frame's header until the last frame's payload has
// passed; control frames between fragments change nothing.
func TestFrameScannerHoldsThePartialMessage(t *testing.T) {
	var f frameScanner
	whole := encodeFrame(0x1, true, 300, false)
	f.scan(whole[:8]) // the header: 2 bytes, 2 of length, 4 of mask
	if f.held != 300 {
		t.Fatalf("a frame's header read: held %d, want 300", f.held)
	}
	f.scan(whole[8:])
	if f.held != 0 {
		t.Fatalf("the frame passed: held %d, want 0", f.held)
	}
	first := encodeFrame(0x1, false, 1000, false)
	ping := encodeFrame(0x9, true, 10, false)
	last := encodeFrame(0x0, true, 70000, false)
	f.scan(first)
	if f.held != 1000 {
		t.Fatalf("a first fragment passed: held %d, want 1000", f.held)
	}
	f.scan(ping)
	if f.held != 1000 {
		t.Fatalf("a ping between fragments: held %d, want 1000", f.held)
	}
	f.scan(last[:len(last)-1])
	if f.held != 71000 {
		t.Fatalf("the last fragment but a byte: held %d, want 71000", f.held)
	}
	f.scan(last[len(last)-1:])
	if f.held != 0 {
		t.Fatalf("the message passed: held %d, want 0", f.held)
	}
	f.scan(encodeFrame(0x1, true, 0, false))
	if f.held != 0 {
		t.Fatalf("an empty frame: held %d, want 0", f.held)
	}
	// Messages begun: the whole frame, the fragmented message, the empty
	// frame; neither the ping nor the continuation begins one.
	if f.starts != 3 {
		t.Fatalf("%d messages begun, want 3", f.starts)
	}
}
