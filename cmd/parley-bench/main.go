// Command parley-bench is Parley's load generator. It drives real
// WebSocket connections through the Go client against a running server
// (embedded or scale-out), at a fixed open-loop rate, verifies everything
// it receives (nothing lost, nothing twice, in order) and reports
// throughput and latency percentiles from HDR histograms as JSON.
//
//	parley-bench --scenario direct --conns 200 --rate 5000 --duration 60s --data-dir parley-data
//
// Scenarios: direct (1:1, each message from a random device to a random
// other one, or in a ring with --peers ring), group (groups of
// --group-size, every member sends), sync (a storm of 50-message syncs
// answered by the cache), idle (hold connections; report server memory
// per connection), fill (write history to accounts that never connect
// and report how fast it was fully projected). Past the
// per-process open-files limit, --procs runs several generator processes
// and merges their reports. Only loopback targets are accepted.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/auth"
)

type config struct {
	URL        string        `json:"url"`
	MetricsURL string        `json:"metricsUrl,omitempty"`
	Scenario   string        `json:"scenario"`
	Peers      string        `json:"peers,omitempty"`
	Conns      int           `json:"conns"`
	Rate       float64       `json:"rate"`
	Duration   time.Duration `json:"duration"`
	GroupSize  int           `json:"groupSize,omitempty"`
	BodyBytes  int           `json:"bodyBytes"`
	Sources    int           `json:"sources"`
	Procs      int           `json:"procs"`
	Drain      time.Duration `json:"drain"`
	Prefix     string        `json:"prefix"`
	Interval   time.Duration `json:"interval,omitempty"`

	SyncFrom     string        `json:"syncFrom,omitempty"`
	OfflinePeers int           `json:"offlinePeers,omitempty"`
	Settle       time.Duration `json:"settle,omitempty"`

	ServerProfile     time.Duration `json:"serverProfile,omitempty"`
	ServerProfileFile string        `json:"serverProfileFile,omitempty"`

	secret   []byte
	child    int // >0: this process is child number child-1
	progress bool
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "parley-bench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var cfg config
	fs := flag.NewFlagSet("parley-bench", flag.ContinueOnError)
	fs.StringVar(&cfg.URL, "url", "ws://127.0.0.1:8080/ws", "gateway WebSocket URL (loopback only)")
	fs.StringVar(&cfg.MetricsURL, "metrics-url", "http://127.0.0.1:8080/metrics", "server /metrics, for its CPU and memory (loopback only); empty skips")
	fs.StringVar(&cfg.Scenario, "scenario", "direct", "direct, group, sync, idle or fill")
	fs.StringVar(&cfg.Peers, "peers", "random", "direct: random (any device to any other) or ring (device i to i+1, as the first runs)")
	fs.IntVar(&cfg.Conns, "conns", 100, "connections (devices)")
	fs.Float64Var(&cfg.Rate, "rate", 1000, "messages (or syncs) per second, open loop, over all connections")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "how long to send")
	fs.IntVar(&cfg.GroupSize, "group-size", 50, "members per group (group scenario)")
	fs.StringVar(&cfg.SyncFrom, "sync-from", "cache", "sync: cache (a lastTime a minute ago, which the cache answers) or store (eight days ago: the history answers)")
	fs.IntVar(&cfg.OfflinePeers, "offline-peers", 2000, "fill: accounts, never connected, that the messages go to")
	fs.DurationVar(&cfg.Settle, "settle", 10*time.Minute, "fill: how long to wait after the last ack for the server's projections to catch up")
	fs.IntVar(&cfg.BodyBytes, "body-bytes", 100, "message body size in bytes, 20..16384 (the send time takes 20, chat-like text the rest)")
	fs.IntVar(&cfg.Sources, "sources", 4, "spread connections over 127.0.0.1..127.0.0.N")
	fs.IntVar(&cfg.Procs, "procs", 1, "generator processes (each holds conns/procs connections)")
	fs.DurationVar(&cfg.Drain, "drain", 10*time.Second, "how long to wait for the last pushes")
	fs.StringVar(&cfg.Prefix, "prefix", "", "account prefix (default: a random one per run)")
	fs.DurationVar(&cfg.Interval, "interval", 10*time.Second, "report throughput, p99 and server CPU per interval of this length; 0 for none")
	fs.DurationVar(&cfg.ServerProfile, "server-profile", 0, "fetch a CPU profile this long (whole seconds, at most 50s) from the server's /debug/pprof/profile in the middle of the run; the server needs --pprof")
	fs.StringVar(&cfg.ServerProfileFile, "server-profile-file", "parley-server.cpu.pprof", "where --server-profile saves the profile")
	ownProfile := fs.String("cpu-profile", "", "write the generator's own CPU profile to this file (with --procs, the first process's)")
	fs.BoolVar(&cfg.progress, "progress", true, "print progress every second on stderr")
	secret := fs.String("token-secret", "", "the server's token secret")
	dataDir := fs.String("data-dir", "parley-data", "the server's data dir, to read its token secret when --token-secret is empty")
	report := fs.String("report", "", "write the JSON report to this file too")
	fs.IntVar(&cfg.child, "child", 0, "internal: run as child N of --procs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	cfg.secret = []byte(*secret)
	if len(cfg.secret) == 0 {
		s, err := auth.LoadOrCreateSecret(*dataDir)
		if err != nil {
			return err
		}
		cfg.secret = s
	}
	if cfg.Prefix == "" {
		cfg.Prefix = fmt.Sprintf("b%x", time.Now().UnixNano()%0xffffff)
	}
	if *ownProfile != "" && cfg.child <= 1 {
		f, err := os.Create(*ownProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var rep *Report
	var err error
	switch {
	case cfg.child > 0:
		rep, err = runLoad(ctx, cfg)
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(rep)
	case cfg.Procs > 1:
		rep, err = runProcs(ctx, cfg, args)
	default:
		rep, err = runLoad(ctx, cfg)
	}
	if err != nil {
		return err
	}
	rep.AckHist, rep.PushHist, rep.SyncHist = nil, nil, nil // for children only
	rep.Summary = rep.summary()
	out, _ := json.MarshalIndent(rep, "", "  ")
	fmt.Println(string(out))
	if *report != "" {
		if err := os.WriteFile(*report, append(out, '\n'), 0o644); err != nil {
			return err
		}
	}
	// The summary goes to stderr too, where it is not lost in the JSON.
	fmt.Fprintln(os.Stderr, "parley-bench:", rep.Summary)
	if rep.Server.Error != "" {
		fmt.Fprintln(os.Stderr, "parley-bench: server CPU and memory:", rep.Server.Error)
	}
	if rep.Verify.failed() {
		return fmt.Errorf("verification failed: %d acked messages lost, %d pushes duplicated, %d out of order",
			rep.Verify.Lost, rep.Verify.Duplicated, rep.Verify.OutOfOrder)
	}
	if rep.Profile != nil && rep.Profile.Error != "" {
		return fmt.Errorf("no server profile: %s", rep.Profile.Error)
	}
	if rep.Profile != nil {
		fmt.Fprintf(os.Stderr, "parley-bench: server CPU profile of %ds saved to %s\n", rep.Profile.Seconds, rep.Profile.File)
	}
	return nil
}

func (c *config) validate() error {
	var errs []error
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") {
		errs = append(errs, fmt.Errorf("--url %q must be ws://", c.URL))
	} else if !loopback(u.Hostname()) {
		errs = append(errs, fmt.Errorf("--url %q: load is only ever sent to loopback", c.URL))
	}
	if c.MetricsURL != "" {
		if m, err := url.Parse(c.MetricsURL); err != nil || !loopback(m.Hostname()) {
			errs = append(errs, fmt.Errorf("--metrics-url %q must be on loopback", c.MetricsURL))
		}
	}
	switch c.Scenario {
	case "direct", "group", "sync", "idle", "fill":
	default:
		errs = append(errs, fmt.Errorf("--scenario %q: want direct, group, sync, idle or fill", c.Scenario))
	}
	if c.Conns < 2 || c.Rate <= 0 || c.Duration <= 0 || c.Procs < 1 || c.Sources < 1 || c.Sources > 250 {
		errs = append(errs, errors.New("--conns >= 2, --rate > 0, --duration > 0, --procs >= 1, --sources 1..250"))
	}
	if c.Scenario == "group" && (c.GroupSize < 2 || c.GroupSize > c.Conns/c.Procs) {
		errs = append(errs, fmt.Errorf("--group-size %d must be within 2..conns per process", c.GroupSize))
	}
	if c.Scenario == "fill" && (c.OfflinePeers < 1 || c.Settle <= 0 || c.Procs != 1) {
		errs = append(errs, errors.New("fill: --offline-peers >= 1, --settle > 0 and --procs 1"))
	}
	if c.SyncFrom != "cache" && c.SyncFrom != "store" {
		errs = append(errs, fmt.Errorf("--sync-from %q: want cache or store", c.SyncFrom))
	}
	if c.Interval != 0 && c.Interval < time.Second {
		errs = append(errs, errors.New("--interval must be 0 or at least 1s"))
	}
	if p := c.ServerProfile; p != 0 {
		// pprof takes whole seconds, and the server's HTTP write timeout
		// (60 s) must leave room for the reply.
		if p < time.Second || p > 50*time.Second || p%time.Second != 0 || p > c.Duration {
			errs = append(errs, errors.New("--server-profile must be whole seconds, 1s..50s, and no longer than --duration"))
		}
		if c.ServerProfileFile == "" {
			errs = append(errs, errors.New("--server-profile needs --server-profile-file"))
		}
	}
	if c.BodyBytes < timePrefixLen || c.BodyBytes > domain.MaxBodyBytes {
		errs = append(errs, fmt.Errorf("--body-bytes must be within %d..%d", timePrefixLen, domain.MaxBodyBytes))
	}
	switch c.Peers {
	case "random", "ring":
	default:
		errs = append(errs, fmt.Errorf("--peers %q: want random or ring", c.Peers))
	}
	return errors.Join(errs...)
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// syncLastTime is the lastTime of the sync scenario's cursors: the server
// answers from the cache when it is within 7 days, else from the history.
func (c *config) syncLastTime() time.Time {
	if c.SyncFrom == "store" {
		return time.Now().Add(-8 * 24 * time.Hour)
	}
	return time.Now().Add(-time.Minute)
}

// tokens mints the devices' tokens locally with the server's secret.
func (c *config) tokens() (*auth.Tokens, error) { return auth.NewTokens(c.secret) }
