package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The generator reads the server's own account of its CPU and memory from
// its Prometheus /metrics: process_cpu_seconds_total and
// process_resident_memory_bytes, from the Go process collector. Only the
// server's numbers are there; the generator, sharing the machine, is not.
// It also reads the server's latency histograms (serverLatencies), so that
// a report tells how much of a client's latency the server saw.

// ServerStats is the server's CPU and resident memory over the measured
// window. Numbers that could not be read are absent, with Error saying why.
type ServerStats struct {
	// MetricsURL is where they were read.
	MetricsURL string `json:"metricsUrl,omitempty"`
	// Error says why some or all numbers are missing.
	Error string `json:"error,omitempty"`
	// WindowSeconds is the time between the first and last successful
	// reads within the measured window: the span CPUPercent covers.
	WindowSeconds float64 `json:"windowSeconds,omitempty"`
	// Samples and FailedSamples count the reads of /metrics in the window
	// (one a second, and one at each end).
	Samples       int `json:"samples,omitempty"`
	FailedSamples int `json:"failedSamples,omitempty"`
	// CPUPercent is the server's CPU time over the window's wall time, in
	// percent of one core: 150 is one and a half cores busy.
	CPUPercent *float64 `json:"cpuPercent,omitempty"`
	// RSS is the server's resident memory at the first and last reads,
	// and the largest read.
	RSSStartBytes *float64 `json:"rssStartBytes,omitempty"`
	RSSEndBytes   *float64 `json:"rssEndBytes,omitempty"`
	RSSPeakBytes  *float64 `json:"rssPeakBytes,omitempty"`
	// MachineCPUPercent is the whole machine's busy CPU over the window
	// (Linux /proc/stat), in percent of one core: the server, the
	// generator, and PostgreSQL, Redis or anything else beside them.
	// Absent where /proc/stat cannot be read, and with the rest when no
	// read of /metrics succeeded.
	MachineCPUPercent *float64 `json:"machineCpuPercent,omitempty"`
	// Latency is the server's own account of parts of the clients'
	// latency over the window, from its histograms (serverLatencies):
	// requestWait, sendAccept, pushQueued and writeWait (what a client
	// saw beyond their sum was spent in the network, the kernel and the
	// client itself), and schedLatency, the server's goroutines' waits
	// for a thread. Absent for a server without them.
	Latency map[string]ServerLatency `json:"latencyMs,omitempty"`
	// LagMaxRecords is, for each projection, the most records it was
	// behind the log (all partitions together) at any read in the window
	// (parley_projection_lag_records, read once a second): divided by the
	// acked rate, about how many seconds its read model was behind — for
	// parley.projection.store, the history. Absent for a server without
	// the metric.
	LagMaxRecords map[string]float64 `json:"lagMaxRecords,omitempty"`
}

// ServerLatency is one server histogram over the window, in milliseconds.
// Quantiles are interpolated within the histogram's buckets, which double
// (from 0.5 ms, or 50 µs for the waits): they are estimates, good to
// within a bucket.
type ServerLatency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
}

// serverLatencies are the server histograms the report reads, by the name
// it gives them: a request waits for its connection's worker
// (requestWait), a send is appended and acked (sendAccept), a message's
// push is queued on each device's connection (pushQueued), every frame
// waits in its connection's queue until written (writeWait), and the
// server's goroutines wait, runnable, for a thread (schedLatency: the
// Go runtime's, in coarse buckets).
var serverLatencies = map[string]string{
	"parley_request_wait_seconds": "requestWait",
	"parley_send_accept_seconds":  "sendAccept",
	"parley_push_seconds":         "pushQueued",
	"parley_write_wait_seconds":   "writeWait",
	"go_sched_latencies_seconds":  "schedLatency",
}

// bucket is a cumulative histogram bucket: count observations at most le
// seconds.
type bucket struct {
	le    float64
	count float64
}

// histogramDelta is the buckets of b minus those of a (a histogram read
// at two moments), or nil when they do not line up or a count went down
// (the server restarted in between).
func histogramDelta(a, b []bucket) []bucket {
	if len(a) == 0 || len(a) != len(b) {
		return nil
	}
	out := make([]bucket, len(b))
	for i := range b {
		if a[i].le != b[i].le || b[i].count < a[i].count {
			return nil
		}
		out[i] = bucket{le: b[i].le, count: b[i].count - a[i].count}
	}
	return out
}

// quantile estimates the q-quantile of cumulative buckets (the last one
// +Inf), in seconds, by linear interpolation within the bucket it falls
// in, as Prometheus' histogram_quantile does; past the last finite
// bucket it is that bucket's bound.
func quantile(bs []bucket, q float64) float64 {
	if len(bs) == 0 || bs[len(bs)-1].count <= 0 {
		return 0
	}
	want := q * bs[len(bs)-1].count
	var lo, below float64
	for _, b := range bs {
		if b.count >= want {
			if math.IsInf(b.le, 1) {
				return lo
			}
			if b.count == below {
				return b.le
			}
			return lo + (b.le-lo)*(want-below)/(b.count-below)
		}
		lo, below = b.le, b.count
	}
	return lo
}

// sample is one read of the server's /metrics, with the machine's CPU
// counters read at the same moment.
type sample struct {
	at  time.Time
	cpu float64 // process_cpu_seconds_total
	rss float64 // process_resident_memory_bytes
	// hists are the serverLatencies histograms, by metric name.
	hists map[string][]bucket
	err   error
	// machine is the machine's CPU time, busy and in all (ok: read).
	machine machineCPU
	// lag is each projection's lag in records, all partitions together.
	lag map[string]float64
}

// machineCPU is the first line of /proc/stat: the time all CPUs were busy
// and the time in all, in clock ticks, and how many CPUs there are.
type machineCPU struct {
	busy, total uint64
	cpus        int
	ok          bool
}

// readMachineCPU reads /proc/stat; ok is false where it cannot.
func readMachineCPU() machineCPU {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	defer f.Close()
	return parseProcStat(f)
}

// parseProcStat reads the "cpu" line of /proc/stat (user nice system idle
// iowait irq softirq steal ...: idle and iowait are not busy) and counts
// the "cpuN" lines.
func parseProcStat(r io.Reader) machineCPU {
	var m machineCPU
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 0:
		case len(f) > 5 && f[0] == "cpu":
			for i, v := range f[1:] {
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return machineCPU{}
				}
				if i < 8 { // guest time is counted in user time already
					m.total += n
					if i != 3 && i != 4 {
						m.busy += n
					}
				}
			}
			m.ok = true
		case strings.HasPrefix(f[0], "cpu") && len(f[0]) > 3:
			m.cpus++
		}
	}
	if m.cpus == 0 {
		m.ok = false
	}
	return m
}

// metricsClient reads /metrics; a read that takes longer than a sampling
// period is a failed read, not a late one.
var metricsClient = &http.Client{Timeout: 2 * time.Second}

// scrape reads the server's CPU seconds and resident memory.
func scrape(ctx context.Context, metricsURL string) sample {
	s := sample{at: time.Now(), machine: readMachineCPU()}
	var m processMetrics
	m, s.err = readProcessMetrics(ctx, metricsURL)
	s.cpu, s.rss, s.hists, s.lag = m.cpu, m.rss, m.hists, m.lag
	return s
}

// processMetrics is what the generator reads of the server's /metrics.
type processMetrics struct {
	cpu, rss float64
	hists    map[string][]bucket // the serverLatencies found
	lag      map[string]float64  // parley_projection_lag_records by projection, summed
}

func readProcessMetrics(ctx context.Context, metricsURL string) (processMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return processMetrics{}, err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return processMetrics{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return processMetrics{}, fmt.Errorf("%s: %s", metricsURL, resp.Status)
	}
	return parseProcessMetrics(resp.Body)
}

// parseProcessMetrics finds the two process metrics and the
// serverLatencies histograms' buckets in Prometheus text.
func parseProcessMetrics(r io.Reader) (processMetrics, error) {
	var m processMetrics
	var haveCPU, haveRSS bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// A lag the generator cannot read is left out, not the whole
		// read: CPU and memory are what every report needs.
		if projection, records, isLag, err := lagLine(sc.Text()); isLag && err == nil {
			if m.lag == nil {
				m.lag = map[string]float64{}
			}
			m.lag[projection] += records
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		if name, le, ok := bucketLine(f[0]); ok {
			n, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return processMetrics{}, fmt.Errorf("cannot parse %s: %w", f[0], err)
			}
			if m.hists == nil {
				m.hists = map[string][]bucket{}
			}
			m.hists[name] = append(m.hists[name], bucket{le: le, count: n})
			continue
		}
		var dst *float64
		switch f[0] {
		case "process_cpu_seconds_total":
			dst, haveCPU = &m.cpu, true
		case "process_resident_memory_bytes":
			dst, haveRSS = &m.rss, true
		default:
			continue
		}
		var err error
		if *dst, err = strconv.ParseFloat(f[1], 64); err != nil {
			return processMetrics{}, fmt.Errorf("cannot parse %s: %w", f[0], err)
		}
	}
	if err := sc.Err(); err != nil {
		return processMetrics{}, err
	}
	if !haveCPU || !haveRSS {
		return processMetrics{}, errors.New("no process_cpu_seconds_total or process_resident_memory_bytes (is the Go process collector registered?)")
	}
	return m, nil
}

// bucketLine reads a series name such as
// parley_send_accept_seconds_bucket{le="0.004"}: the histogram's name and
// the bound, if it is one of serverLatencies' buckets (they have no other
// label).
func bucketLine(series string) (name string, le float64, ok bool) {
	name, rest, found := strings.Cut(series, "_bucket{le=\"")
	if !found || !strings.HasSuffix(rest, "\"}") {
		return "", 0, false
	}
	if _, known := serverLatencies[name]; !known {
		return "", 0, false
	}
	le, err := strconv.ParseFloat(strings.TrimSuffix(rest, "\"}"), 64)
	if err != nil {
		return "", 0, false
	}
	return name, le, true
}

// sampler reads the server's metrics once a second. It keeps every
// sample: with its histograms about 1 KiB a second, a few hundred KiB for
// a long run.
type sampler struct {
	url string

	mu      sync.Mutex
	samples []sample
}

// take reads the metrics now and keeps the result.
func (s *sampler) take(ctx context.Context) {
	x := scrape(ctx, s.url)
	if x.err != nil && ctx.Err() != nil {
		return // interrupted, not a failed read
	}
	s.mu.Lock()
	s.samples = append(s.samples, x)
	s.mu.Unlock()
}

// run takes a sample a second until ctx ends.
func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.take(ctx)
		}
	}
}

// stats summarizes the samples taken from from to to.
func (s *sampler) stats(from, to time.Time) ServerStats {
	out := ServerStats{MetricsURL: s.url}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ok []sample
	var lastErr error
	for _, x := range s.samples {
		if x.at.Before(from) || x.at.After(to) {
			continue
		}
		if x.err != nil {
			out.FailedSamples++
			lastErr = x.err
			continue
		}
		ok = append(ok, x)
	}
	out.Samples = len(ok) + out.FailedSamples
	if lastErr != nil {
		out.Error = fmt.Sprintf("%d of %d reads of /metrics failed, the last with: %v", out.FailedSamples, out.Samples, lastErr)
	}
	if len(ok) == 0 {
		if out.Error == "" {
			out.Error = "no read of /metrics in the window"
		}
		return out
	}
	first, last := ok[0], ok[len(ok)-1]
	peak := first.rss
	for _, x := range ok {
		peak = max(peak, x.rss)
	}
	out.RSSStartBytes, out.RSSEndBytes, out.RSSPeakBytes = &first.rss, &last.rss, &peak
	if wall := last.at.Sub(first.at).Seconds(); wall > 0 {
		out.WindowSeconds = wall
		cpu := (last.cpu - first.cpu) / wall * 100
		out.CPUPercent = &cpu
	}
	if a, b := first.machine, last.machine; a.ok && b.ok && b.total > a.total && b.busy >= a.busy {
		m := float64(b.busy-a.busy) / float64(b.total-a.total) * float64(b.cpus) * 100
		out.MachineCPUPercent = &m
	}
	out.Latency = latencyIn(s.samples, from, to)
	for _, x := range ok {
		for projection, n := range x.lag {
			if out.LagMaxRecords == nil {
				out.LagMaxRecords = map[string]float64{}
			}
			out.LagMaxRecords[projection] = max(out.LagMaxRecords[projection], n)
		}
	}
	return out
}

// latencyBetween is what the serverLatencies histograms observed between
// two reads of them, a before b; nil when neither read has them.
func latencyBetween(a, b map[string][]bucket) map[string]ServerLatency {
	var out map[string]ServerLatency
	for metric, name := range serverLatencies {
		d := histogramDelta(a[metric], b[metric])
		if len(d) == 0 {
			continue
		}
		if out == nil {
			out = map[string]ServerLatency{}
		}
		out[name] = ServerLatency{Count: int64(d[len(d)-1].count), P50: quantile(d, 0.5) * 1000, P99: quantile(d, 0.99) * 1000}
	}
	return out
}

// latencies is latencyIn the samples taken so far.
func (s *sampler) latencies(from, to time.Time) map[string]ServerLatency {
	s.mu.Lock()
	defer s.mu.Unlock()
	return latencyIn(s.samples, from, to)
}

// latencyIn is latencyBetween the last successful reads at or before from
// and at or before to: an interval's own observations, none of its
// neighbours' and none left out between them. With no read at or before
// from (the window opens just before its first read) it counts from the
// first read after from; nil with fewer than two reads.
func latencyIn(samples []sample, from, to time.Time) map[string]ServerLatency {
	var a, b *sample
	for i := range samples {
		x := &samples[i]
		if x.err != nil || x.at.After(to) {
			continue
		}
		if a == nil || !x.at.After(from) {
			a = x
		}
		b = x
	}
	if a == nil || a == b {
		return nil
	}
	return latencyBetween(a.hists, b.hists)
}

// noServerStats is the report when the metrics were not read at all.
func noServerStats(why string) ServerStats { return ServerStats{Error: why} }

// ProfileResult is what --server-profile fetched.
type ProfileResult struct {
	// URL the profile was fetched from.
	URL string `json:"url"`
	// File it was written to.
	File string `json:"file"`
	// Seconds the server profiled for.
	Seconds int `json:"seconds"`
	// StartedAtSecond is when the profile began, in seconds into the
	// measured window.
	StartedAtSecond float64 `json:"startedAtSecond"`
	// Bytes written to File.
	Bytes int `json:"bytes,omitempty"`
	// Error says why there is no profile.
	Error string `json:"error,omitempty"`
}

// profileURL is the server's CPU profile endpoint, on the same address as
// --metrics-url (the process whose CPU is reported), or as --url without
// metrics.
func (c *config) profileURL() string {
	host := ""
	if m, err := url.Parse(c.MetricsURL); c.MetricsURL != "" && err == nil {
		host = m.Host
	} else if u, err := url.Parse(c.URL); err == nil {
		host = u.Host
	}
	return fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", host, int(c.ServerProfile/time.Second))
}

// profile waits until the profile is centred in the measured window, then
// fetches it into the file. The server must run with --pprof.
func (c *config) profile(ctx context.Context, started time.Time) ProfileResult {
	delay := (c.Duration - c.ServerProfile) / 2
	res := ProfileResult{URL: c.profileURL(), File: c.ServerProfileFile, Seconds: int(c.ServerProfile / time.Second)}
	select {
	case <-ctx.Done():
		res.Error = "interrupted before the profile started"
		return res
	case <-time.After(time.Until(started.Add(delay))):
	}
	res.StartedAtSecond = time.Since(started).Seconds()
	n, err := fetchProfile(ctx, res.URL, c.ServerProfile, c.ServerProfileFile)
	res.Bytes = n
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

func fetchProfile(ctx context.Context, profileURL string, d time.Duration, file string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, profileURL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot fetch the profile: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return 0, fmt.Errorf("cannot read the profile: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("cannot fetch the profile: %s: %.200s (is the server running with --pprof?)", resp.Status, strings.TrimSpace(string(body)))
	}
	// A profile is gzipped protobuf. Without --pprof the path may still
	// answer 200, with the console's page.
	if len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
		return 0, fmt.Errorf("cannot fetch the profile: %s did not answer with a profile (is the server running with --pprof?)", profileURL)
	}
	if err := os.WriteFile(file, body, 0o644); err != nil {
		return 0, fmt.Errorf("cannot save the profile: %w", err)
	}
	return len(body), nil
}
