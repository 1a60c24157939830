package main

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Message bodies start with the send time, which the receiver reads back
// to measure send → push, and go on with chat-like text: words of varied
// length, punctuation, now and then a quote, an ampersand, an accented
// letter, an emoji or a line break. Bodies of one repeated byte would
// compress and escape unlike anything people type.

// timePrefixLen is the length of the time prefix: 19 digits of Unix
// nanoseconds (until 2286) and a '|'.
const timePrefixLen = 20

// bodyTexts is how many distinct texts a run cycles through.
const bodyTexts = 512

var words = strings.Fields(`hi hey ok okay yes no maybe sure thanks thank you so much see
	you later tomorrow tonight today morning lunch dinner meeting call me when
	you're free I'll be there in ten minutes running late sorry the train is
	delayed again did you see that? haha lol that's great news! let's do it
	where are we going what time works for you I think we should wait a bit
	the report is almost done sending it now can you check the numbers please
	love it <3 coffee? café rendez-vous über naïve 🙂 👍 🎉 "quoted" R&D Q&A
	fine, good; great: 3pm 10:30 #42 @team $20 50% (maybe) [draft] x-ray`)

// newBodies returns the texts for bodies of n bytes, the same for every run
// (a fixed seed), so that runs stay comparable.
func newBodies(n int) []string {
	need := max(n-timePrefixLen, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]string, bodyTexts)
	for i := range out {
		var b strings.Builder
		for b.Len() < need {
			if b.Len() > 0 {
				if rng.IntN(40) == 0 {
					b.WriteByte('\n')
				} else {
					b.WriteByte(' ')
				}
			}
			b.WriteString(words[rng.IntN(len(words))])
		}
		out[i] = fit(b.String(), need)
	}
	return out
}

// fit cuts s to exactly n bytes without splitting a character, padding
// with dots where a cut character leaves a gap.
func fit(s string, n int) string {
	if len(s) <= n {
		return s + strings.Repeat(".", n-len(s))
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + strings.Repeat(".", n-cut)
}

// body is the body of the i-th message, sent at sent.
func (l *load) body(sent time.Time, i int64) string {
	text := l.bodies[int(i%int64(len(l.bodies)))]
	b := make([]byte, 0, timePrefixLen+len(text))
	b = strconv.AppendInt(b, sent.UnixNano(), 10)
	b = append(b, '|')
	return string(append(b, text...))
}

func sentAt(body string) (time.Time, bool) {
	s, _, ok := strings.Cut(body, "|")
	if !ok {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(s, 10, 64)
	return time.Unix(0, ns), err == nil
}
