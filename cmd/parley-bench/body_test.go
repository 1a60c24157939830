package main

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestBodies(t *testing.T) {
	for _, n := range []int{timePrefixLen, 21, 64, 100, 1000, 16 << 10} {
		l := &load{bodies: newBodies(n)}
		distinct := map[string]bool{}
		for i := int64(0); i < bodyTexts; i++ {
			sent := time.Unix(1795714619, 123456789)
			b := l.body(sent, i)
			if len(b) != n || !utf8.ValidString(b) {
				t.Fatalf("%d bytes asked: got %d bytes, valid UTF-8 %v: %q", n, len(b), utf8.ValidString(b), b)
			}
			if at, ok := sentAt(b); !ok || !at.Equal(sent) {
				t.Fatalf("send time read back as %v %v from %q", at, ok, b)
			}
			distinct[b] = true
		}
		if n >= 64 && len(distinct) < bodyTexts/2 {
			t.Errorf("%d bytes: only %d distinct bodies of %d", n, len(distinct), bodyTexts)
		}
	}
}

// Bodies are text, not one repeated byte: a realistic share of distinct
// bytes, and no long runs of one.
func TestBodiesVary(t *testing.T) {
	text := strings.Join(newBodies(100), "")
	seen := map[byte]bool{}
	for i := 0; i < len(text); i++ {
		seen[text[i]] = true
	}
	if len(seen) < 40 {
		t.Errorf("%d distinct bytes in the bodies, want at least 40", len(seen))
	}
	if strings.Contains(text, strings.Repeat(".", 8)) {
		t.Error("bodies are padded with long runs of dots")
	}
}

func TestPairIsUniformOverOthers(t *testing.T) {
	l := &load{cfg: config{Peers: "random"}}
	for i := 0; i < 5; i++ {
		l.devices = append(l.devices, &device{})
	}
	counts := map[[2]*device]int{}
	const draws = 100000
	for i := int64(0); i < draws; i++ {
		a, b := l.pair(i)
		if a == b {
			t.Fatal("a device sent to itself")
		}
		counts[[2]*device{a, b}]++
	}
	want := draws / 20 // 5 senders × 4 recipients
	if len(counts) != 20 {
		t.Fatalf("%d pairs used, want 20", len(counts))
	}
	for p, n := range counts {
		if n < want*8/10 || n > want*12/10 {
			t.Errorf("pair %p→%p drawn %d times, want about %d", p[0], p[1], n, want)
		}
	}
	l.cfg.Peers = "ring"
	if a, b := l.pair(4); a != l.devices[4] || b != l.devices[0] {
		t.Error("ring: device 4 does not send to device 0")
	}
}
