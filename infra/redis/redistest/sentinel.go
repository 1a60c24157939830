package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name Sentinels started by StartSentinel monitor.
const SentinelMaster = "parleytest"

// Sentinel is a master, its replica and a Sentinel that monitors them,
// each its own redis-server process (the machine's, from PATH), on ports
// of their own: a failover must not touch the server the other tests
// share.
type Sentinel struct {
	// Addr is the Sentinel's host:port.
	Addr string
	// Master and Replica are the servers' host:port as started; after
	// Failover the replica is the master.
	Master, Replica string
	t               testing.TB
}

// StartSentinel starts a master, a replica and a Sentinel, and waits
// until the Sentinel knows both. Without redis-server the test is
// skipped, or fails when CI=true. Everything stops when the test ends.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		Unavailable(t, err)
	}
	dir := t.TempDir()
	s := &Sentinel{t: t, Master: freeAddr(t), Replica: freeAddr(t), Addr: freeAddr(t)}
	start := func(name string, args ...string) {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		out, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("cannot start redis-server (%s): %v", name, err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); out.Close() })
	}
	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
	start("master", "--port", port(s.Master), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	start("replica", "--port", port(s.Replica), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--replicaof", "127.0.0.1", port(s.Master))
	// A Sentinel rewrites its configuration file, so it gets one.
	conf := filepath.Join(dir, "sentinel.conf")
	host, mport, _ := net.SplitHostPort(s.Master)
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("port %s\nbind 127.0.0.1\nsentinel monitor %s %s %s 1\n"+
		"sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\n",
		port(s.Addr), SentinelMaster, host, mport, SentinelMaster, SentinelMaster)), 0o600); err != nil {
		t.Fatal(err)
	}
	start("sentinel", conf, "--sentinel")
	s.waitFor(func(ctx context.Context) (bool, error) {
		if err := s.server(s.Replica).Ping(ctx).Err(); err != nil {
			return false, err
		}
		info, err := s.server(s.Replica).Info(ctx, "replication").Result()
		if err != nil {
			return false, err
		}
		if !containsLine(info, "master_link_status:up") {
			return false, nil
		}
		// A replica the Sentinel has not heard from itself is not one it
		// would promote (NOGOODSLAVE).
		replicas, err := s.sentinel().Replicas(ctx, SentinelMaster).Result()
		return len(replicas) == 1 && replicas[0]["flags"] == "slave" && replicas[0]["master-link-status"] == "ok", err
	}, "the Sentinel to know the master and its replica")
	return s
}

// Failover has the Sentinel promote the replica, and waits until it is
// the master.
func (s *Sentinel) Failover() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.sentinel().Failover(ctx, SentinelMaster).Err(); err != nil {
		s.t.Fatalf("sentinel failover: %v", err)
	}
	s.waitFor(func(ctx context.Context) (bool, error) {
		addr, err := s.sentinel().GetMasterAddrByName(ctx, SentinelMaster).Result()
		if err != nil || len(addr) != 2 || net.JoinHostPort(addr[0], addr[1]) != s.Replica {
			return false, err
		}
		role, err := s.server(s.Replica).Do(ctx, "ROLE").Slice()
		return err == nil && len(role) > 0 && role[0] == "master", err
	}, "the replica to become the master")
}

func (s *Sentinel) sentinel() *redis.SentinelClient {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *Sentinel) server(addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitFor polls ok for up to 20 s.
func (s *Sentinel) waitFor(ok func(context.Context) (bool, error), what string) {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		done, err := ok(ctx)
		cancel()
		if done {
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("waited 20 s for %s (last error: %v)", what, last)
}

func containsLine(text, line string) bool {
	return slices.Contains(strings.Split(strings.ReplaceAll(text, "\r", ""), "\n"), line)
}

// freeAddr is a loopback address whose port nothing listens on now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}
