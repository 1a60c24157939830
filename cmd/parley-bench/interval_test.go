package main

import (
	"testing"
	"time"
)

func TestIntervals(t *testing.T) {
	l := &load{cfg: config{child: 1}, ackHist: newHist(), pushHist: newHist(), syncHist: newHist(),
		ackCur: newHist(), pushCur: newHist(), syncCur: newHist()}
	start := time.Unix(1795714619, 0)
	iv := newIntervals(l, start)
	for i := 0; i < 100; i++ {
		l.sent.Add(1)
		l.ackN.Add(1)
		l.record(l.ackHist, &l.ackCur, time.Duration(i+1)*time.Millisecond)
	}
	iv.close(start.Add(10 * time.Second))
	l.sent.Add(50)
	l.unacked.Add(50)
	iv.close(start.Add(15 * time.Second))
	if len(iv.rows) != 2 {
		t.Fatalf("%d rows", len(iv.rows))
	}
	a, b := iv.rows[0], iv.rows[1]
	if a.EndSecond != 10 || a.Seconds != 10 || a.SentPerSecond != 10 || a.AckedPerSecond != 10 || a.AckP99 < 98 || a.AckP99 > 100 {
		t.Errorf("first interval %+v", a)
	}
	if b.EndSecond != 15 || b.Seconds != 5 || b.SentPerSecond != 10 || b.AckedPerSecond != 0 || b.Unacked != 50 || b.AckP99 != 0 {
		t.Errorf("second interval %+v", b)
	}
	if a.AckHist == "" || b.AckHist != "" {
		t.Errorf("a child sends non-empty histograms only: %q, %q", a.AckHist[:min(10, len(a.AckHist))], b.AckHist)
	}

	// Two children's intervals merge: rates add, histograms merge.
	l2 := &load{cfg: config{child: 2}, ackHist: newHist(), pushHist: newHist(), syncHist: newHist(),
		ackCur: newHist(), pushCur: newHist(), syncCur: newHist()}
	iv2 := newIntervals(l2, start)
	for i := 0; i < 100; i++ {
		l2.ackN.Add(1)
		l2.record(l2.ackHist, &l2.ackCur, time.Second)
	}
	iv2.close(start.Add(10 * time.Second))
	merged, err := mergeIntervals([]*Report{{Intervals: iv.rows}, {Intervals: iv2.rows}})
	if err != nil {
		t.Fatal(err)
	}
	if len(merged) != 2 || merged[0].AckedPerSecond != 20 || merged[0].AckP99 < 999 || merged[0].AckP99 > 1001 || merged[1].Unacked != 50 {
		t.Errorf("merged %+v", merged)
	}
	if merged[0].AckHist != "" {
		t.Error("merged intervals keep their histograms")
	}
}

// The last sends' acks, a few milliseconds after the last full interval,
// join it instead of making a row of their own.
func TestIntervalsFoldAShortTail(t *testing.T) {
	l := &load{ackHist: newHist(), pushHist: newHist(), syncHist: newHist(),
		ackCur: newHist(), pushCur: newHist(), syncCur: newHist()}
	start := time.Unix(1795714619, 0)
	iv := newIntervals(l, start)
	l.sent.Add(100)
	l.ackN.Add(90)
	iv.close(start.Add(10 * time.Second))
	l.ackN.Add(10)
	l.record(l.ackHist, &l.ackCur, 5*time.Second)
	iv.finish(start.Add(10*time.Second + 5*time.Millisecond))
	if len(iv.rows) != 1 {
		t.Fatalf("%d rows, want 1", len(iv.rows))
	}
	if r := iv.rows[0]; r.Seconds != 10.005 || r.AckedPerSecond != 100/10.005 || r.AckP99 < 4990 {
		t.Errorf("row %+v", r)
	}
	// A long tail (sends waiting out their timeout) stands on its own.
	iv.finish(start.Add(20 * time.Second))
	if len(iv.rows) != 2 {
		t.Errorf("%d rows, want 2", len(iv.rows))
	}
}
