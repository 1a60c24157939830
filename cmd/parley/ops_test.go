package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/parley-chat/parley/cmd/parley/node"

	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric reads one sample of the Prometheus text output, 0 if absent.
func metric(t *testing.T, body, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// /healthz and /readyz answer with their checks, and /metrics has the
// documented metrics, which move with traffic.
func TestOperationsEndpoints(t *testing.T) {
	s := startServer(t, nil)
	base := "http://" + s.n.Addr()
	if code, body := httpGet(t, base+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Errorf("/healthz: %d %q", code, body)
	}
	code, body := httpGet(t, base+"/readyz")
	var ready struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal([]byte(body), &ready); err != nil || code != 200 || ready.Status != "ready" || ready.Checks["bus"] != "ok" || ready.Checks["parley.projection.store"] != "ok" {
		t.Errorf("/readyz: %d %q", code, body)
	}

	_, before := httpGet(t, base+"/metrics")
	aliceDev := s.device("alice", "phone")
	alice := aliceDev.c
	bob := s.device("bob", "phone")
	ctx := ctxT(t)
	for i := 0; i < 3; i++ {
		if _, err := alice.Send(ctx, client.Target{Account: "bob"}, strconv.Itoa(i), "", "m"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := alice.Send(ctx, client.Target{Group: "nosuchgroup"}, "x", "", "m"); client.CodeOf(err) != wire.CodeNotFound {
		t.Fatal(err)
	}
	bob.waitPushes(t, 3)
	aliceDev.waitPushes(t, 3) // her own sends, pushed to her too
	if _, err := alice.Sync(ctx, "d:alice:bob", wire.Cursor{}, 10); err != nil {
		t.Fatal(err)
	}
	_, after := httpGet(t, base+"/metrics")
	for _, tc := range []struct {
		series string
		delta  float64
	}{
		{`parley_sends_total{result="accepted"}`, 3},
		{`parley_sends_total{result="not_found"}`, 1},
		{`parley_syncs_total{source="store"}`, 1},
		{`parley_pushes_total`, 6},
		{`parley_push_seconds_count`, 3},
		{`parley_send_accept_seconds_count`, 3},
	} {
		if d := metric(t, after, tc.series) - metric(t, before, tc.series); d != tc.delta {
			t.Errorf("%s moved by %v, want %v", tc.series, d, tc.delta)
		}
	}
	// Every request waited for its connection's worker (two hellos, four
	// sends, a sync), and every frame written to a client was timed: the
	// welcomes, acks, error, pushes and sync reply (the last may be timed
	// just after the client has read it).
	for _, tc := range []struct {
		series string
		least  float64
	}{
		{`parley_request_wait_seconds_count`, 7},
		{`parley_write_wait_seconds_count`, 12},
		// The runtime's scheduler latencies, from the Go collector.
		{`go_sched_latencies_seconds_count`, 1},
	} {
		if d := metric(t, after, tc.series) - metric(t, before, tc.series); d < tc.least {
			t.Errorf("%s moved by %v, want at least %v", tc.series, d, tc.least)
		}
	}
	if metric(t, after, "parley_broker_index_bytes") <= 0 || !strings.Contains(after, "parley_broker_index_read_back_total ") {
		t.Errorf("the embedded broker's index is not in /metrics: bytes %v", metric(t, after, "parley_broker_index_bytes"))
	}
	if metric(t, after, "parley_store_size_bytes") <= 0 {
		t.Errorf("the embedded store's size is not in /metrics: %v", metric(t, after, "parley_store_size_bytes"))
	}
	for _, series := range []string{"parley_store_read_amplification", "parley_store_compaction_debt_bytes", "parley_store_compaction_seconds_total",
		"parley_store_l0_sublevels", "parley_store_write_stalls_total", "parley_store_write_stall_seconds_total",
		"parley_store_block_cache_bytes", "parley_store_block_cache_hits_total", "parley_store_block_cache_misses_total"} {
		if !strings.Contains(after, "\n"+series+" ") {
			t.Errorf("%s is not in /metrics", series)
		}
	}
	// Each filter of held keys reports its memory, at least its first
	// part's 96 KiB, by projection and kind.
	for _, f := range []string{`kind="client_msg_ids",projection="parley.projection.store"`, `kind="message_ids",projection="parley.projection.store"`,
		`kind="floors",projection="parley.projection.store"`, `kind="conversations",projection="parley.projection.conversations"`} {
		if b := metric(t, after, "parley_store_filter_bytes{"+f+"}"); b < 96<<10 {
			t.Errorf("parley_store_filter_bytes{%s} = %v, want at least 96 KiB", f, b)
		}
		if !strings.Contains(after, "\nparley_store_filter_loaded{"+f+"} ") {
			t.Errorf("parley_store_filter_loaded{%s} is not in /metrics", f)
		}
	}
	if metric(t, after, "parley_connections") != 2 {
		t.Errorf("parley_connections = %v, want 2", metric(t, after, "parley_connections"))
	}
	if !strings.Contains(after, "\nparley_sends_undecided 0\n") {
		t.Error("parley_sends_undecided is not in /metrics, or not 0 with the broker answering")
	}
	if !strings.Contains(after, `parley_projection_lag_records{partition="0",projection="parley.projection.store"}`) {
		t.Error("no projection lag per partition in /metrics")
	}
}

// mountTmpfs mounts a tmpfs of size bytes at a new directory, or skips the
// test where this machine does not allow it (it needs root).
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// A log that cannot be written (its disk full) fails sends with
// unavailable, takes /readyz to 503 with the cause, and both recover once
// there is room again.
func TestFullDiskFailsSendsAndReadiness(t *testing.T) {
	disk := mountTmpfs(t, 4<<20)
	s := startServer(t, func(c *node.Config) { c.EmbeddedBroker.DataDir = filepath.Join(disk, "log") })
	ctx := ctxT(t)
	alice := s.dial("alice", "phone")
	if _, err := alice.Send(ctx, client.Target{Account: "bob"}, "first", "text", "before the disk fills"); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(disk, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write(make([]byte, 8<<20)) // fails when the disk is full, as meant
	f.Close()
	body := strings.Repeat("x", 4<<10)
	var failed error
	for i := 0; i < 200 && failed == nil; i++ {
		_, failed = alice.Do(ctx, wire.Request{Type: wire.TypeSend, To: "bob", ClientMsgID: fmt.Sprint("full-", i), Body: body})
	}
	if client.CodeOf(failed) != wire.CodeUnavailable {
		t.Fatalf("a send to a full disk: %v, want unavailable", failed)
	}
	// The client learns the code, not the broker's own words (logged).
	if msg := failed.(*client.Error).Message; strings.Contains(strings.ToLower(msg), "kafka") || strings.Contains(msg, "storage") {
		t.Errorf("the error text leaks the cause: %q", msg)
	}
	code, ready := httpGet(t, "http://"+s.n.Addr()+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(ready, `"log"`) {
		t.Errorf("/readyz with a full disk: %d %s", code, ready)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, client.Target{Account: "bob"}, "after", "text", "room again"); err != nil {
		t.Fatalf("a send once there is room again: %v", err)
	}
	if code, ready := httpGet(t, "http://"+s.n.Addr()+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz once there is room again: %d %s", code, ready)
	}
}

// A single node whose disk is nearly full refuses writes before its
// embedded store runs out of room (a failed write to the store's own log
// stops the process): sends are answered unavailable, /readyz fails
// "disk", and both recover once there is room; what was acked is kept.
func TestNearlyFullDiskRefusesWrites(t *testing.T) {
	disk := mountTmpfs(t, 160<<20)
	const floor = 32 << 20
	s := startServer(t, func(c *node.Config) {
		c.DataDir = filepath.Join(disk, "data")
		c.EmbeddedBroker.DataDir = filepath.Join(c.DataDir, "log")
		c.MinFreeDisk = floor
	})
	ctx := ctxT(t)
	alice := s.dial("alice", "phone")
	first, err := alice.Send(ctx, client.Target{Account: "bob"}, "first", "text", "before the disk fills")
	if err != nil {
		t.Fatal(err)
	}
	// Leave less than the floor free.
	var st syscall.Statfs_t
	if err := syscall.Statfs(disk, &st); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(disk, "filler")
	if err := os.WriteFile(filler, make([]byte, int64(st.Bavail)*st.Bsize-floor/2), 0o600); err != nil {
		t.Fatal(err)
	}
	// Each send is new (a retry would get its first ack); the guard looks
	// every second.
	var failed error
	sent := 0
	waitFor(t, func() bool {
		_, failed = alice.Send(ctx, client.Target{Account: "bob"}, fmt.Sprint("fill-", sent), "text", "as the disk fills")
		if failed == nil {
			sent++
		}
		return failed != nil
	})
	if client.CodeOf(failed) != wire.CodeUnavailable {
		t.Fatalf("a send with the disk nearly full: %v, want unavailable", failed)
	}
	// A mute writes the store, not the log: refused too.
	if _, err := alice.Mute(ctx, "d:alice:bob", 0); client.CodeOf(err) != wire.CodeUnavailable {
		t.Errorf("a mute with the disk nearly full: %v, want unavailable", err)
	}
	code, ready := httpGet(t, "http://"+s.n.Addr()+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(ready, `"disk"`) || !strings.Contains(ready, "nearly full") {
		t.Errorf("/readyz with the disk nearly full: %d %s", code, ready)
	}
	_, m := httpGet(t, "http://"+s.n.Addr()+"/metrics")
	if free := metric(t, m, "parley_disk_free_bytes"); free <= 0 || free >= floor {
		t.Errorf("parley_disk_free_bytes = %v, want below the floor %d", free, floor)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	var again wire.ServerFrame
	waitFor(t, func() bool {
		again, err = alice.Send(ctx, client.Target{Account: "bob"}, fmt.Sprint("fill-", sent), "text", "as the disk fills")
		return err == nil
	})
	if code, ready := httpGet(t, "http://"+s.n.Addr()+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz once there is room again: %d %s", code, ready)
	}
	got := history(t, alice, "d:alice:bob")
	if len(got) != sent+2 || got[0].MsgID != first.MsgID || got[len(got)-1].MsgID != again.MsgID {
		t.Errorf("history: %d messages, want the %d acked and the retried one", len(got), sent+1)
	}
}

// With --log-fsync, a failed fsync of the log fails the send with
// unavailable — the client holds no ack for a message that may not be on
// disk — and takes /readyz to 503; both recover with the disk.
func TestFailedFsyncFailsSendsAndReadiness(t *testing.T) {
	var failing atomic.Bool
	s := startServer(t, func(c *node.Config) {
		c.EmbeddedBroker.SyncWrites = true
		c.EmbeddedBroker.SyncFault = func(path string) error {
			if failing.Load() && strings.HasSuffix(path, ".dat") {
				return errors.New("injected: input/output error")
			}
			return nil
		}
	})
	ctx := ctxT(t)
	alice := s.dial("alice", "phone")
	if _, err := alice.Send(ctx, client.Target{Account: "bob"}, "first", "text", "synced"); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	_, err := alice.Send(ctx, client.Target{Account: "bob"}, "lost", "text", "not synced")
	if client.CodeOf(err) != wire.CodeUnavailable {
		t.Fatalf("a send whose fsync failed: %v, want unavailable", err)
	}
	if code, ready := httpGet(t, "http://"+s.n.Addr()+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(ready, `"log"`) {
		t.Errorf("/readyz after a failed fsync: %d %s", code, ready)
	}
	failing.Store(false)
	var ack wire.ServerFrame
	waitFor(t, func() bool {
		ack, err = alice.Send(ctx, client.Target{Account: "bob"}, "after", "text", "synced again")
		return err == nil
	})
	if code, ready := httpGet(t, "http://"+s.n.Addr()+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz once the disk syncs again: %d %s", code, ready)
	}
	got := history(t, alice, "d:alice:bob")
	if len(got) != 2 || got[0].Body != "synced" || got[1].Body != "synced again" || got[1].MsgID != ack.MsgID {
		t.Errorf("history after a failed fsync: %+v, want the two synced messages", got)
	}
}

// The connections' outgoing queues may hold a quarter of the memory limit
// together, so that slow readers cannot hold the heap above it; with no
// limit, 1 GiB.
func TestQueueBudgetFollowsTheMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	t.Setenv("GOMEMLIMIT", "") // restored after the test; a set one would win
	os.Unsetenv("GOMEMLIMIT")
	for _, c := range []struct{ limit, want int64 }{{0, 1 << 30}, {128 << 20, 32 << 20}, {64 << 20, 16 << 20}} {
		debug.SetMemoryLimit(math.MaxInt64)
		s := startServer(t, func(cfg *node.Config) { cfg.MemoryLimit = c.limit })
		_, m := httpGet(t, "http://"+s.n.Addr()+"/metrics")
		if got := metric(t, m, "parley_outgoing_queued_bytes_limit"); got != float64(c.want) {
			t.Errorf("--memory-limit %d: parley_outgoing_queued_bytes_limit = %v, want %d", c.limit, got, c.want)
		}
		if !strings.Contains(m, "\nparley_outgoing_queued_bytes ") {
			t.Error("parley_outgoing_queued_bytes is not in /metrics")
		}
	}
}
