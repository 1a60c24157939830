package main

import (
	"errors"
	"fmt"
	"runtime/metrics"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Interval is one slice of the measured window (--interval, 10 s by
// default): throughput and tail latency over that slice alone, so that a
// long run shows drift that its totals would average away.
type Interval struct {
	// EndSecond is the interval's end, in seconds into the window.
	EndSecond float64 `json:"t"`
	// Seconds is its length; the last one may be shorter.
	Seconds float64 `json:"seconds"`

	SentPerSecond  float64 `json:"sentPerSecond"`
	AckedPerSecond float64 `json:"ackedPerSecond"`
	// Unacked counts the sends that ended without an ack in the interval.
	Unacked         int64   `json:"unacked"`
	PushesPerSecond float64 `json:"pushesPerSecond"`
	SyncsPerSecond  float64 `json:"syncsPerSecond,omitempty"`

	// Percentiles of what completed within the interval, in milliseconds.
	AckP99  float64 `json:"ackP99Ms"`
	PushP99 float64 `json:"pushP99Ms"`
	SyncP99 float64 `json:"syncP99Ms,omitempty"`

	// The server's CPU (percent of one core) over the interval and its
	// resident memory at the interval's end, when its /metrics was read.
	ServerCPUPercent *float64 `json:"serverCpuPercent,omitempty"`
	ServerRSSBytes   *float64 `json:"serverRssBytes,omitempty"`
	// GeneratorHeapBytes is the generator's own live heap as of its last
	// garbage collection before the interval's end (summed over --procs):
	// it should level off however long the run, or the generator's
	// bookkeeping is what drifts.
	GeneratorHeapBytes uint64 `json:"generatorHeapBytes,omitempty"`
	// ServerLatency is the server's own histograms over the interval, as
	// in the report's server.latencyMs: whether a client's tail that
	// drifts is the server's.
	ServerLatency map[string]ServerLatency `json:"serverLatencyMs,omitempty"`

	// The interval's histograms travel from child processes to the
	// parent, compressed (HdrHistogram's V2 encoding, in base64).
	AckHist  string `json:"ackHist,omitempty"`
	PushHist string `json:"pushHist,omitempty"`
	SyncHist string `json:"syncHist,omitempty"`

	from, to time.Time
}

// counts are the counters an interval takes the difference of.
type counts struct{ sent, acked, unacked, pushes, syncs int64 }

func (l *load) counts() counts {
	return counts{l.sent.Load(), l.ackN.Load(), l.unacked.Load(), l.pushN.Load(), l.syncN.Load()}
}

// intervals cuts the measured window into Intervals.
type intervals struct {
	l    *load
	rows []Interval
	err  error // the first histogram that could not be encoded

	started time.Time
	// The open interval's start and the counters then; and the last
	// closed interval's, with its histograms, so that finish can fold a
	// short tail into it.
	from, prevFrom time.Time
	at, prevAt     counts
	prevHists      [3]*hdrhistogram.Histogram
}

func newIntervals(l *load, started time.Time) *intervals {
	return &intervals{l: l, started: started, from: started}
}

// close ends the open interval at now and opens the next. Only one
// goroutine at a time may call close or finish.
func (iv *intervals) close(now time.Time) {
	hists, c := iv.take()
	iv.rows = append(iv.rows, iv.row(iv.from, now, iv.at, c, hists))
	iv.prevFrom, iv.prevAt, iv.prevHists = iv.from, iv.at, hists
	iv.from, iv.at = now, c
}

// finish closes the last interval at end. A tail under a second, which
// is mostly the last sends' acks, joins the interval before it instead of
// standing as a row whose rates come from a few milliseconds.
func (iv *intervals) finish(end time.Time) {
	if end.Sub(iv.from) >= time.Second || len(iv.rows) == 0 {
		iv.close(end)
		return
	}
	hists, c := iv.take()
	for i, h := range hists {
		h.Merge(iv.prevHists[i])
	}
	iv.rows[len(iv.rows)-1] = iv.row(iv.prevFrom, end, iv.prevAt, c, hists)
}

// take swaps the current interval's histograms for empty ones and reads
// the counters.
func (iv *intervals) take() ([3]*hdrhistogram.Histogram, counts) {
	l := iv.l
	l.histMu.Lock()
	hists := [3]*hdrhistogram.Histogram{l.ackCur, l.pushCur, l.syncCur}
	l.ackCur, l.pushCur, l.syncCur = newHist(), newHist(), newHist()
	l.histMu.Unlock()
	return hists, l.counts()
}

// row is the interval from from to to, over which the counters went from
// a to b.
func (iv *intervals) row(from, to time.Time, a, b counts, hists [3]*hdrhistogram.Histogram) Interval {
	secs := to.Sub(from).Seconds()
	rate := func(n int64) float64 { return float64(n) / secs }
	ack, push, syn := hists[0], hists[1], hists[2]
	row := Interval{
		EndSecond: to.Sub(iv.started).Seconds(), Seconds: secs,
		SentPerSecond: rate(b.sent - a.sent), AckedPerSecond: rate(b.acked - a.acked),
		Unacked: b.unacked - a.unacked, PushesPerSecond: rate(b.pushes - a.pushes),
		SyncsPerSecond: rate(b.syncs - a.syncs),
		AckP99:         p99(ack), PushP99: p99(push), SyncP99: p99(syn),
		GeneratorHeapBytes: heapBytes(),
		from:               from, to: to,
	}
	if iv.l.cfg.child > 0 {
		var errs [3]error
		row.AckHist, errs[0] = encode(ack)
		row.PushHist, errs[1] = encode(push)
		row.SyncHist, errs[2] = encode(syn)
		if err := errors.Join(errs[:]...); err != nil && iv.err == nil {
			iv.err = fmt.Errorf("cannot encode an interval's histograms: %w", err)
		}
	}
	return row
}

// run closes an interval every period until stop is closed.
func (iv *intervals) run(every time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			iv.close(now)
		}
	}
}

// addServer fills in the server's columns from the sampler.
func addServer(rows []Interval, s *sampler) {
	for i := range rows {
		st := s.stats(rows[i].from, rows[i].to)
		rows[i].ServerCPUPercent, rows[i].ServerRSSBytes = st.CPUPercent, st.RSSEndBytes
		rows[i].ServerLatency = s.latencies(rows[i].from, rows[i].to)
	}
}

// heapBytes is this process's heap that the last garbage collection found
// live, read without stopping the world; 0 (left out of the report) if
// the runtime does not say.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

func p99(h *hdrhistogram.Histogram) float64 { return float64(h.ValueAtQuantile(99)) / 1000 }

// encode is the compressed form of h, "" when it is empty.
func encode(h *hdrhistogram.Histogram) (string, error) {
	if h.TotalCount() == 0 {
		return "", nil
	}
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	return string(b), err
}

// mergeIntervals adds up the children's intervals, one index at a time:
// the children start their windows within moments of each other. Rates
// add up, histograms merge, and the times and the server's columns are
// the first child's, which read the server's metrics.
func mergeIntervals(rs []*Report) ([]Interval, error) {
	var out []Interval
	type hists struct{ ack, push, syn *hdrhistogram.Histogram }
	var hs []hists
	for ri, r := range rs {
		for i, row := range r.Intervals {
			if i == len(out) {
				out = append(out, Interval{EndSecond: row.EndSecond, Seconds: row.Seconds})
				hs = append(hs, hists{newHist(), newHist(), newHist()})
			}
			o := &out[i]
			if ri == 0 {
				o.EndSecond, o.Seconds = row.EndSecond, row.Seconds
				o.ServerCPUPercent, o.ServerRSSBytes, o.ServerLatency = row.ServerCPUPercent, row.ServerRSSBytes, row.ServerLatency
			}
			o.SentPerSecond += row.SentPerSecond
			o.AckedPerSecond += row.AckedPerSecond
			o.Unacked += row.Unacked
			o.PushesPerSecond += row.PushesPerSecond
			o.SyncsPerSecond += row.SyncsPerSecond
			o.GeneratorHeapBytes += row.GeneratorHeapBytes
			for _, p := range []struct {
				into *hdrhistogram.Histogram
				from string
			}{{hs[i].ack, row.AckHist}, {hs[i].push, row.PushHist}, {hs[i].syn, row.SyncHist}} {
				if p.from == "" {
					continue
				}
				h, err := hdrhistogram.Decode([]byte(p.from))
				if err != nil {
					return nil, fmt.Errorf("cannot decode generator process %d's histogram of interval %d: %w", ri+1, i+1, err)
				}
				p.into.Merge(h)
			}
		}
	}
	for i := range out {
		out[i].AckP99, out[i].PushP99, out[i].SyncP99 = p99(hs[i].ack), p99(hs[i].push), p99(hs[i].syn)
	}
	return out, nil
}
