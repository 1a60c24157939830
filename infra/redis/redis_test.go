package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	parleyredis "github.com/parley-chat/parley/infra/redis"
	"github.com/parley-chat/parley/infra/redis/redistest"
	"github.com/parley-chat/parley/infra/tlsconfig/tlsconfigtest"
	goredis "github.com/redis/go-redis/v9"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  parleyredis.Config
		want []string // substrings of the error; none for a valid config
	}{
		{name: "defaults", cfg: parleyredis.Config{}.WithDefaults()},
		{name: "everything set", cfg: parleyredis.Config{Addr: "redis.internal:6380", Password: "x", DB: 3, Prefix: "p:", PoolSize: 50}},
		{name: "no port", cfg: parleyredis.Config{Addr: "localhost"}, want: []string{"not host:port"}},
		{name: "bad port", cfg: parleyredis.Config{Addr: "localhost:http"}, want: []string{"1..65535"}},
		{name: "a user and a password over TLS", cfg: parleyredis.Config{Addr: "h:6379", User: "u", Password: "p", TLS: true, TLSCAFile: "/ca.pem"}},
		{name: "a user without a password", cfg: parleyredis.Config{Addr: "h:6379", User: "u"}, want: []string{"a user needs a password"}},
		{name: "a CA file without TLS", cfg: parleyredis.Config{Addr: "h:6379", TLSCAFile: "/ca.pem"}, want: []string{"needs TLS"}},
		{name: "a client certificate without TLS", cfg: parleyredis.Config{Addr: "h:6379", TLSCertFile: "/c.pem", TLSKeyFile: "/c.key"}, want: []string{"needs TLS"}},
		{name: "a client key without its certificate", cfg: parleyredis.Config{Addr: "h:6379", TLS: true, TLSKeyFile: "/c.key"}, want: []string{"both its certificate and its key"}},
		{
			name: "every problem at once",
			cfg:  parleyredis.Config{Addr: "localhost:0", DB: -1, PoolSize: -2},
			want: []string{"1..65535", "db -1", "pool size -2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors with %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	c := parleyredis.Config{}.WithDefaults()
	if c.Addr != "127.0.0.1:6379" || c.Prefix != "parley:" {
		t.Errorf("defaults = %+v", c)
	}
	if c := (parleyredis.Config{Addr: "h:1", Prefix: "x:"}).WithDefaults(); c.Addr != "h:1" || c.Prefix != "x:" {
		t.Errorf("WithDefaults overwrote set fields: %+v", c)
	}
}

func TestOpenRejectsABadConfig(t *testing.T) {
	if _, err := parleyredis.Open(context.Background(), parleyredis.Config{Addr: "nohost"}); err == nil {
		t.Error("Open with a bad address succeeded")
	}
}

func TestOpenFailsWithoutAServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	// Port 1 on the loopback: nothing listens there.
	if c, err := parleyredis.Open(ctx, parleyredis.Config{Addr: "127.0.0.1:1"}); err == nil {
		_ = c.Close()
		t.Fatal("Open succeeded without a server")
	} else if !strings.Contains(err.Error(), "cannot reach redis") {
		t.Errorf("Open = %v", err)
	}
}

func TestOpenPings(t *testing.T) {
	redistest.Client(t) // skips (or fails in CI) without a server
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := parleyredis.Open(ctx, parleyredis.Config{Addr: redistest.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Error(err)
	}
}

// An ACL user with its password is let in, and can use the database it
// names; a wrong password is refused.
func TestOpenAuthenticatesAsAUserOfADatabase(t *testing.T) {
	admin, prefix := redistest.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	user, password := "parleytest-"+randomHex(t), randomHex(t)
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "on", ">"+password, "~"+prefix+"*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", user) })

	const db = 7
	c, err := parleyredis.Open(ctx, parleyredis.Config{Addr: redistest.Addr(), User: user, Password: password, DB: db})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	key := prefix + "k"
	if err := c.Set(ctx, key, "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Del(context.Background(), key) })
	if n, err := admin.Exists(ctx, key).Result(); err != nil || n != 0 {
		t.Errorf("the key landed in database 0 (exists %d, %v), not %d", n, err, db)
	}
	if who, err := c.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || who != user {
		t.Errorf("connected as %q (%v), want %q", who, err, user)
	}

	if bad, err := parleyredis.Open(ctx, parleyredis.Config{Addr: redistest.Addr(), User: user, Password: "wrong"}); err == nil {
		bad.Close()
		t.Fatal("a wrong password was let in")
	} else if !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("a wrong password: %v, want WRONGPASS", err)
	}
}

// Over TLS, Open reaches a server whose certificate the CA file vouches
// for; it refuses one that only the system's CAs would have to trust, and
// a plain connection to the TLS port fails.
func TestOpenOverTLS(t *testing.T) {
	certs := tlsconfigtest.New(t)
	addr := startTLSServer(t, certs, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := parleyredis.Open(ctx, parleyredis.Config{Addr: addr, TLS: true, TLSCAFile: certs.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	for name, cfg := range map[string]parleyredis.Config{
		"the system's CAs": {Addr: addr, TLS: true},
		"no TLS":           {Addr: addr},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if bad, err := parleyredis.Open(ctx, cfg); err == nil {
			bad.Close()
			t.Errorf("with %s, Open reached the TLS server", name)
		}
		cancel()
	}
}

// A server that asks for client certificates (tls-auth-clients) takes a
// client with the one in TLSCertFile and TLSKeyFile, and refuses one
// without.
func TestOpenOverTLSWithAClientCertificate(t *testing.T) {
	certs := tlsconfigtest.New(t)
	addr := startTLSServer(t, certs, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := parleyredis.Open(ctx, parleyredis.Config{Addr: addr, TLS: true, TLSCAFile: certs.CAFile,
		TLSCertFile: certs.ClientCertFile, TLSKeyFile: certs.ClientKeyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if bad, err := parleyredis.Open(ctx2, parleyredis.Config{Addr: addr, TLS: true, TLSCAFile: certs.CAFile}); err == nil {
		bad.Close()
		t.Error("a server asking for client certificates took a client without one")
	}
}

// startTLSServer runs a redis-server of the test's own that listens only
// for TLS, on a free loopback port, and stops it when the test ends; with
// authClients it requires a client certificate the test CA signed.
func startTLSServer(t *testing.T, certs tlsconfigtest.Certificates, authClients bool) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		redistest.Unavailable(t, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", "0", "--bind", "127.0.0.1", "--tls-port", strconv.Itoa(port),
		"--tls-cert-file", certs.CertFile, "--tls-key-file", certs.KeyFile, "--tls-ca-cert-file", certs.CAFile,
		"--tls-auth-clients", map[bool]string{false: "no", true: "yes"}[authClients], "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); ; {
		select {
		case err := <-done:
			t.Fatalf("redis-server stopped: %v\n%s", err, out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not listen on %s: %v\n%s", addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Through Sentinels the client finds the master, and after a failover
// writes to the replica the Sentinels promoted.
func TestOpenThroughSentinelsFollowsAFailover(t *testing.T) {
	s := redistest.StartSentinel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := parleyredis.Open(ctx, parleyredis.Config{Sentinels: []string{s.Addr}, SentinelMaster: redistest.SentinelMaster})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	promoted := goredis.NewClient(&goredis.Options{Addr: s.Replica})
	defer promoted.Close()
	// Redis replicates asynchronously: a write the replica has not
	// received when the failover comes is lost (the cache repairs such
	// losses; see projections/progress). Wait for this one to arrive, so
	// that what is checked below is the promotion, not the race.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if got, _ := promoted.Get(ctx, "before").Result(); got == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica did not receive a write within 10 s")
		}
	}
	s.Failover()
	// While the client learns of the switch, commands fail, and a write
	// the old master took before it became a replica is lost. Then writes
	// reach the promoted replica.
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		want := strconv.Itoa(i)
		if c.Set(ctx, "after", want, 0).Err() == nil {
			if got, _ := promoted.Get(ctx, "after").Result(); got == want {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no write reached the promoted replica within 15 s of the failover")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got, err := promoted.Get(ctx, "before").Result(); err != nil || got != "1" {
		t.Errorf("a write from before the failover on the promoted replica: %q, %v", got, err)
	}
}

func TestSentinelConfig(t *testing.T) {
	for name, c := range map[string]parleyredis.Config{
		"no master name":             {Sentinels: []string{"127.0.0.1:26379"}},
		"a master name, no sentinel": {SentinelMaster: "m"},
		"a bad sentinel address":     {Sentinels: []string{"127.0.0.1"}, SentinelMaster: "m"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: valid", name)
		}
	}
}
