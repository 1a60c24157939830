package main

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Report is the JSON the generator prints at the end.
type Report struct {
	Config   config         `json:"config"`
	Started  time.Time      `json:"started"`
	Elapsed  float64        `json:"elapsedSeconds"`
	Sent     int64          `json:"sent"`
	Acked    int64          `json:"acked"`
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
	// Unacked: pushes of messages whose send failed on the generator's side
	// (the server accepted them after the generator gave up waiting).
	Unacked int64 `json:"pushesOfUnackedSends"`
}

// Memory is the server's resident memory, from its /metrics.
type Memory struct {
	BeforeBytes  float64 `json:"rssBeforeBytes,omitempty"`
	AfterBytes   float64 `json:"rssAfterBytes,omitempty"`
	PerConnBytes float64 `json:"perConnectionBytes,omitempty"`
}

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) } // 1 µs .. 60 s

func summarize(h *hdrhistogram.Histogram) Latency {
	ms := func(v int64) float64 { return float64(v) / 1000 }
	return Latency{Count: h.TotalCount(), P50: ms(h.ValueAtQuantile(50)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max())}
}

// serverRSS reads process_resident_memory_bytes from the server's /metrics.
func serverRSS(metricsURL string) float64 {
	if metricsURL == "" {
		return 0
	}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(metricsURL)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_resident_memory_bytes "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}
