package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseProcessMetrics(t *testing.T) {
	for _, tc := range []struct {
		name     string
		text     string
		cpu, rss float64
		err      string
	}{
		{name: "go collector", text: "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n" +
			"# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n" +
			"process_resident_memory_bytes 2.5214976e+07\nprocess_virtual_memory_bytes 1.2e+09\n",
			cpu: 12.5, rss: 25214976},
		{name: "no process collector", text: "go_goroutines 12\n", err: "no process_cpu_seconds_total"},
		{name: "only cpu", text: "process_cpu_seconds_total 1\n", err: "no process_cpu_seconds_total"},
		{name: "garbage value", text: "process_cpu_seconds_total x\nprocess_resident_memory_bytes 1\n", err: "cannot parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseProcessMetrics(strings.NewReader(tc.text))
			cpu, rss := m.cpu, m.rss
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || cpu != tc.cpu || rss != tc.rss {
				t.Fatalf("got %v %v %v, want %v %v", cpu, rss, err, tc.cpu, tc.rss)
			}
		})
	}
}

// The server's latency histograms are read from /metrics, and a report
// gives their quantiles over the window only: what was observed before it
// does not count.
func TestSamplerStatsServerLatency(t *testing.T) {
	read := func(text string) map[string][]bucket {
		t.Helper()
		m, err := parseProcessMetrics(strings.NewReader("process_cpu_seconds_total 1\nprocess_resident_memory_bytes 1\n" + text))
		if err != nil {
			t.Fatal(err)
		}
		return m.hists
	}
	before := read(`parley_send_accept_seconds_bucket{le="0.001"} 1000
parley_send_accept_seconds_bucket{le="0.002"} 1000
parley_send_accept_seconds_bucket{le="0.004"} 1000
parley_send_accept_seconds_bucket{le="+Inf"} 1000
parley_sends_total{result="accepted"} 1000
parley_other_seconds_bucket{le="0.001"} 7
`)
	// In the window: 50 sends within 1 ms, 48 within 1–2 ms, two slower
	// than 4 ms.
	after := read(`parley_send_accept_seconds_bucket{le="0.001"} 1050
parley_send_accept_seconds_bucket{le="0.002"} 1098
parley_send_accept_seconds_bucket{le="0.004"} 1098
parley_send_accept_seconds_bucket{le="+Inf"} 1100
`)
	if _, ok := after["parley_other_seconds"]; ok {
		t.Error("a histogram the report does not use was kept")
	}
	t0 := time.Unix(1795714619, 0)
	s := &sampler{samples: []sample{
		{at: t0, cpu: 1, rss: 1, hists: before},
		{at: t0.Add(time.Second), cpu: 2, rss: 1, hists: after},
	}}
	got := s.stats(t0, t0.Add(time.Second)).Latency
	l, ok := got["sendAccept"]
	if !ok || len(got) != 1 {
		t.Fatalf("latency %v, want sendAccept only", got)
	}
	if l.Count != 100 || l.P50 != 1 || l.P99 != 4 {
		t.Errorf("sendAccept %+v, want 100 sends, p50 1 ms, p99 4 ms (the slowest bucket's bound)", l)
	}
	if q := quantile(histogramDelta(before["parley_send_accept_seconds"], after["parley_send_accept_seconds"]), 0.74); q < 0.001499 || q > 0.001501 {
		t.Errorf("p74 %v s, want 1.5 ms: halfway through the 1–2 ms bucket", q)
	}
	// Counts that went down (a server restarted between the reads) give
	// no latencies rather than negative ones.
	if d := histogramDelta(after["parley_send_accept_seconds"], before["parley_send_accept_seconds"]); d != nil {
		t.Errorf("a histogram read after a restart gives %v, want nothing", d)
	}
}

// An interval's server latencies are what the histograms observed from
// the last read at or before its start to the last at or before its end:
// the second between two intervals' reads counts in the later one.
func TestIntervalServerLatency(t *testing.T) {
	hist := func(fast, slow float64) map[string][]bucket {
		return map[string][]bucket{"parley_write_wait_seconds": {{le: 0.001, count: fast}, {le: 0.002, count: fast + slow}, {le: math.Inf(1), count: fast + slow}}}
	}
	t0 := time.Unix(1795714619, 0)
	s := &sampler{samples: []sample{
		{at: t0, hists: hist(0, 0)},
		{at: t0.Add(1 * time.Second), hists: hist(100, 0)},
		{at: t0.Add(2 * time.Second), err: fmt.Errorf("refused")},
		{at: t0.Add(3 * time.Second), hists: hist(100, 100)}, // the slow ones came in the second interval
		{at: t0.Add(4 * time.Second), hists: hist(100, 100)},
	}}
	rows := []Interval{{from: t0, to: t0.Add(2 * time.Second)}, {from: t0.Add(2 * time.Second), to: t0.Add(4 * time.Second)}}
	addServer(rows, s)
	first, second := rows[0].ServerLatency["writeWait"], rows[1].ServerLatency["writeWait"]
	if first.Count != 100 || first.P99 > 1 {
		t.Errorf("first interval %+v, want 100 frames within 1 ms", first)
	}
	if second.Count != 100 || second.P50 < 1 || second.P99 > 2 {
		t.Errorf("second interval %+v, want the 100 frames of 1–2 ms (counted from the read at 1 s)", second)
	}
	if got := (&sampler{samples: s.samples[:1]}).latencies(t0, t0.Add(time.Second)); got != nil {
		t.Errorf("one read gives %v, want nothing", got)
	}
	// The window's first interval has no read before it: it counts from
	// its first.
	late := &sampler{samples: s.samples[1:]}
	if got := late.latencies(t0, t0.Add(4*time.Second))["writeWait"]; got.Count != 100 || got.P50 < 1 {
		t.Errorf("an interval whose first read came after its start: %+v, want the 100 slow frames", got)
	}
}

func TestSamplerStats(t *testing.T) {
	t0 := time.Unix(1795714619, 0)
	s := &sampler{url: "http://127.0.0.1:1/metrics", samples: []sample{
		{at: t0.Add(-time.Second), cpu: 0, rss: 999e6}, // before the window
		{at: t0, cpu: 10, rss: 100e6},
		{at: t0.Add(time.Second), err: fmt.Errorf("connection refused")},
		{at: t0.Add(2 * time.Second), cpu: 11, rss: 300e6},
		{at: t0.Add(4 * time.Second), cpu: 13, rss: 200e6},
	}}
	st := s.stats(t0, t0.Add(4*time.Second))
	if st.LagMaxRecords != nil {
		t.Errorf("lag %v from reads without it", st.LagMaxRecords)
	}
	if st.CPUPercent == nil || *st.CPUPercent != 75 {
		t.Errorf("cpu %v, want 75 (3 CPU seconds in 4)", st.CPUPercent)
	}
	if *st.RSSStartBytes != 100e6 || *st.RSSEndBytes != 200e6 || *st.RSSPeakBytes != 300e6 {
		t.Errorf("rss %v %v %v", *st.RSSStartBytes, *st.RSSEndBytes, *st.RSSPeakBytes)
	}
	if st.Samples != 4 || st.FailedSamples != 1 || !strings.Contains(st.Error, "1 of 4 reads") {
		t.Errorf("samples %d failed %d error %q", st.Samples, st.FailedSamples, st.Error)
	}
	if st.WindowSeconds != 4 {
		t.Errorf("window %v", st.WindowSeconds)
	}
}

// A report gives each projection's largest lag at any read in its window,
// all partitions together; reads outside the window do not count.
func TestSamplerStatsLag(t *testing.T) {
	read := func(text string) map[string]float64 {
		t.Helper()
		m, err := parseProcessMetrics(strings.NewReader("process_cpu_seconds_total 1\nprocess_resident_memory_bytes 1\n" + text))
		if err != nil {
			t.Fatal(err)
		}
		return m.lag
	}
	lag := func(store0, store1, push float64) map[string]float64 {
		return read(fmt.Sprintf(`# TYPE parley_projection_lag_records gauge
parley_projection_lag_records{partition="0",projection="parley.projection.store"} %v
parley_projection_lag_records{partition="1",projection="parley.projection.store"} %v
parley_projection_lag_records{partition="0",projection="parley.projection.push"} %v
`, store0, store1, push))
	}
	t0 := time.Unix(1795714619, 0)
	s := &sampler{samples: []sample{
		{at: t0.Add(-time.Second), cpu: 1, rss: 1, lag: lag(9000, 0, 9000)}, // before the window
		{at: t0, cpu: 1, rss: 1, lag: lag(10, 5, 0)},
		{at: t0.Add(time.Second), cpu: 2, rss: 1, lag: lag(2000, 1000, 7)},
		{at: t0.Add(2 * time.Second), cpu: 3, rss: 1, lag: lag(0, 0, 1)},
	}}
	got := s.stats(t0, t0.Add(2*time.Second)).LagMaxRecords
	if len(got) != 2 || got["parley.projection.store"] != 3000 || got["parley.projection.push"] != 7 {
		t.Fatalf("lag max %v, want store 3000 and push 7", got)
	}
	m, err := parseProcessMetrics(strings.NewReader("process_cpu_seconds_total 1\nprocess_resident_memory_bytes 2\nparley_projection_lag_records{projection=\"x\"} y\n"))
	if err != nil || m.cpu != 1 || m.rss != 2 || len(m.lag) != 0 {
		t.Errorf("a lag that is not a number: %+v %v, want it left out and the rest read", m, err)
	}
}

// An unreachable server gives no numbers and says why.
func TestSamplerUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/metrics"
	srv.Close()
	s := &sampler{url: url}
	from := time.Now()
	s.take(context.Background())
	s.take(context.Background())
	st := s.stats(from, time.Now())
	if st.CPUPercent != nil || st.RSSStartBytes != nil || st.RSSPeakBytes != nil {
		t.Errorf("numbers from an unreachable server: %+v", st)
	}
	if !strings.Contains(st.Error, "2 of 2 reads of /metrics failed") {
		t.Errorf("error %q", st.Error)
	}
}

func TestFetchProfile(t *testing.T) {
	var seconds atomic.Value
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/profile", func(w http.ResponseWriter, r *http.Request) {
		seconds.Store(r.URL.Query().Get("seconds"))
		_, _ = w.Write([]byte{0x1f, 0x8b, 8, 0})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("<html>console</html>")) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	cfg := config{URL: "ws://" + host + "/ws", MetricsURL: srv.URL + "/metrics", Duration: 3 * time.Second,
		ServerProfile: time.Second, ServerProfileFile: t.TempDir() + "/cpu.pprof"}
	start := time.Now()
	res := cfg.profile(context.Background(), start)
	if res.Error != "" || res.Bytes != 4 || seconds.Load() != "1" {
		t.Fatalf("got %+v, seconds=%v", res, seconds.Load())
	}
	if res.StartedAtSecond < 0.9 {
		t.Errorf("started %.2fs into a 3s window, want it centred (1s)", res.StartedAtSecond)
	}

	// Without --pprof the console answers the path with a page.
	if _, err := fetchProfile(context.Background(), srv.URL+"/debug/pprof/nothing", time.Second, cfg.ServerProfileFile); err == nil ||
		!strings.Contains(err.Error(), "--pprof") {
		t.Errorf("a page instead of a profile: %v", err)
	}
}

func TestParseLag(t *testing.T) {
	text := `# HELP parley_projection_lag_records Records of the log a projection has not applied yet, per partition.
# TYPE parley_projection_lag_records gauge
parley_projection_lag_records{partition="0",projection="parley.projection.store"} 12
parley_projection_lag_records{partition="1",projection="parley.projection.store"} 3
parley_projection_lag_records{partition="0",projection="parley.projection.push"} 0
process_cpu_seconds_total 1.5
`
	lag, err := parseLag(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if lag["parley.projection.store"] != 15 || lag["parley.projection.push"] != 0 || len(lag) != 2 {
		t.Fatalf("lag %v", lag)
	}
	if _, err := parseLag(strings.NewReader("process_cpu_seconds_total 1.5\n")); err == nil {
		t.Fatal("metrics without lag: want an error")
	}
}

// The machine's CPU is busy time over all time, in percent of one core.
func TestMachineCPU(t *testing.T) {
	stat := func(user, system, idle, iowait uint64) machineCPU {
		return parseProcStat(strings.NewReader(fmt.Sprintf(
			"cpu  %d 0 %d %d %d 0 0 0 0 0\ncpu0 1 0 1 1 0 0 0 0 0 0\ncpu1 1 0 1 1 0 0 0 0 0 0\nintr 5\n", user, system, idle, iowait)))
	}
	a, b := stat(100, 50, 1000, 10), stat(250, 100, 1180, 30)
	if !a.ok || a.cpus != 2 || a.busy != 150 || a.total != 1160 {
		t.Fatalf("parsed %+v", a)
	}
	t0 := time.Unix(1795714619, 0)
	s := &sampler{url: "http://127.0.0.1:1/metrics", samples: []sample{
		{at: t0, cpu: 10, rss: 1, machine: a},
		{at: t0.Add(time.Second), cpu: 11, rss: 1, machine: b},
	}}
	// 200 busy ticks of 400 on two CPUs: one core.
	if m := s.stats(t0, t0.Add(time.Second)).MachineCPUPercent; m == nil || *m != 100 {
		t.Errorf("machine cpu %v, want 100", m)
	}
	if parseProcStat(strings.NewReader("\nintr 5\n")).ok {
		t.Error("no cpu line read as a machine")
	}
}

// Whatever a /metrics body holds, reading it keeps only the histograms the
// report reads, and neither it nor the quantiles of what it read panic.
func FuzzParseProcessMetrics(f *testing.F) {
	f.Add("process_cpu_seconds_total 1\nprocess_resident_memory_bytes 2\nparley_write_wait_seconds_bucket{le=\"0.001\"} 3\nparley_write_wait_seconds_bucket{le=\"+Inf\"} 4\n")
	f.Add("parley_send_accept_seconds_bucket{le=\"NaN\"} -1\nparley_send_accept_seconds_bucket{le=\"x\"} 1\n")
	f.Add("process_cpu_seconds_total 1\nprocess_resident_memory_bytes 2\nparley_projection_lag_records{partition=\"0\",projection=\"p\"} 3\n")
	f.Fuzz(func(t *testing.T, text string) {
		m, err := parseProcessMetrics(strings.NewReader(text))
		if err != nil {
			return
		}
		for name, bs := range m.hists {
			if _, ok := serverLatencies[name]; !ok {
				t.Fatalf("kept %s, not a histogram the report reads", name)
			}
			zero := make([]bucket, len(bs))
			for i := range bs {
				zero[i].le = bs[i].le
			}
			d := histogramDelta(zero, bs)
			for _, q := range []float64{0.5, 0.99} {
				_ = quantile(d, q)
			}
		}
	})
}
