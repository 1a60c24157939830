package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Report is the JSON the generator prints at the end.
type Report struct {
	// Summary is the outcome in one line: verification, and the sends
	// that got no ack.
	Summary string    `json:"summary"`
	Config  config    `json:"config"`
	Started time.Time `json:"started"`
	Elapsed float64   `json:"elapsedSeconds"`
	Sent    int64     `json:"sent"`
	Acked   int64     `json:"acked"`
	// Unacked counts sends that ended without an ack (refused with
	// rate_limited or unavailable, timed out, connection closed); Errors
	// has them by reason. They are not lost: nothing was promised.
	Unacked  int64          `json:"unacked"`
	Errors   map[string]int `json:"errors"`
	Backlog  int64          `json:"skippedByGenerator"`
	Pushes   int64          `json:"pushesReceived"`
	Syncs    int64          `json:"syncs,omitempty"`
	Sources  map[string]int `json:"syncSources,omitempty"`
	AckRate  float64        `json:"ackedPerSecond"`
	PushRate float64        `json:"pushesPerSecond"`
	SyncRate float64        `json:"syncsPerSecond,omitempty"`

	SendToAck  Latency `json:"sendToAckMs"`
	SendToPush Latency `json:"sendToPushMs"`
	SyncLat    Latency `json:"syncMs"`

	Verify Verify `json:"verify"`
	// Server is the server's CPU and memory over the measured window.
	Server ServerStats `json:"server"`
	// Intervals cut the measured window into slices (--interval).
	Intervals []Interval `json:"intervals,omitempty"`
	// Profile is the CPU profile fetched with --server-profile.
	Profile *ProfileResult `json:"serverProfile,omitempty"`
	// Fill is the fill scenario's time until the server's projections
	// caught up.
	Fill *Fill `json:"fill,omitempty"`
	// Memory is the server's memory per connection, from before and
	// after connecting (and, for idle, after the hold).
	Memory Memory `json:"serverMemory"`

	// Histograms travel from child processes to the parent.
	AckHist  *hdrhistogram.Snapshot `json:"ackHist,omitempty"`
	PushHist *hdrhistogram.Snapshot `json:"pushHist,omitempty"`
	SyncHist *hdrhistogram.Snapshot `json:"syncHist,omitempty"`
}

// Latency summarizes a histogram of microseconds, in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

// Verify is what the generator checked of what it received.
type Verify struct {
	// Expected pushes: every acknowledged message, once per recipient
	// device that was connected.
	Expected int64 `json:"expectedPushes"`
	// Lost: acknowledged messages a recipient never got pushed.
	Lost int64 `json:"lost"`
	// Duplicated: pushes of a message a device already had.
	Duplicated int64 `json:"duplicated"`
	// OutOfOrder: pushes with a lower msgid than one before in the same conversation.
	OutOfOrder int64 `json:"outOfOrder"`
	// UnackedPushes: pushes of messages whose send got no ack (the server
	// accepted them after the generator gave up waiting, say).
	UnackedPushes int64 `json:"pushesOfUnackedSends"`
	// Gaps: pushes whose prevMsgId was not the last msgid pushed to that
	// device in the conversation, where a client syncs. A device gets the
	// push of its own sends, so they cause none.
	Gaps int64 `json:"gapSyncs"`
	// Closed counts, by close code and reason, the recipient connections
	// the server closed during the run; pushes they missed count as lost.
	Closed map[string]int `json:"connectionsClosedByServer,omitempty"`
}

// failed says whether verification failed: an acked message was lost,
// or a push came twice or out of order.
func (v Verify) failed() bool { return v.Lost > 0 || v.Duplicated > 0 || v.OutOfOrder > 0 }

// summary is Report.Summary.
func (r *Report) summary() string {
	var b strings.Builder
	switch {
	case r.Config.Scenario == "idle":
		b.WriteString("idle: no messages sent")
	case r.Config.Scenario == "fill" && r.Fill != nil:
		fmt.Fprintf(&b, "%d messages acked", r.Acked)
		if r.Fill.Settled {
			fmt.Fprintf(&b, " and fully projected after %.1fs: %.0f/s", r.Fill.SettledSeconds, r.Fill.ProcessedPerSecond)
		} else {
			fmt.Fprintf(&b, "; projections NOT caught up after %.1fs %s", r.Fill.SettledSeconds, r.Fill.Error)
		}
	case r.Config.Scenario == "sync":
		fmt.Fprintf(&b, "%d syncs answered", r.Syncs)
		if len(r.Errors) > 0 {
			fmt.Fprintf(&b, "; FAILED or short: %s", reasons(r.Errors))
		}
	case r.Verify.failed():
		fmt.Fprintf(&b, "FAILED: %d acked messages lost, %d pushes duplicated, %d out of order",
			r.Verify.Lost, r.Verify.Duplicated, r.Verify.OutOfOrder)
	default:
		fmt.Fprintf(&b, "ok: all %d acked messages pushed to every recipient, none twice, in order", r.Acked)
	}
	if r.Unacked > 0 {
		fmt.Fprintf(&b, "; %d of %d sends got NO ACK (%s), not counted as lost", r.Unacked, r.Sent, reasons(r.Errors))
	}
	return b.String()
}

// reasons lists a count by reason, largest first.
func reasons(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// Memory is the server's resident memory, from its /metrics.
type Memory struct {
	BeforeBytes  float64 `json:"rssBeforeBytes,omitempty"`
	AfterBytes   float64 `json:"rssAfterBytes,omitempty"`
	PerConnBytes float64 `json:"perConnectionBytes,omitempty"`
}

// histMax is the longest latency a histogram holds, in microseconds: an
// hour, far past any timeout, so that a backlog's latencies are recorded
// rather than dropped.
const histMax = int64(time.Hour / time.Microsecond)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, histMax, 3) }

func summarize(h *hdrhistogram.Histogram) Latency {
	ms := func(v int64) float64 { return float64(v) / 1000 }
	return Latency{Count: h.TotalCount(), P50: ms(h.ValueAtQuantile(50)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max())}
}

// serverRSS reads the server's resident memory, 0 when it cannot.
func serverRSS(metricsURL string) float64 {
	if metricsURL == "" {
		return 0
	}
	m, err := readProcessMetrics(context.Background(), metricsURL)
	if err != nil {
		return 0
	}
	return m.rss
}
