package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

// testSecret signs the tokens of every test node.
var testSecret = []byte("parley-test-secret-0123456789abcdef")

// server is a node started in-process on loopback with a random gateway
// port and an embedded broker on a random port, over a data dir that
// outlives restarts within one test.
type server struct {
	t   testing.TB
	dir string
	mod func(*node.Config)
	n   *node.Node
}

func testLogger() *slog.Logger {
	if os.Getenv("PARLEY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startServer(t testing.TB, mod func(*node.Config)) *server {
	t.Helper()
	s := &server{t: t, dir: t.TempDir(), mod: mod}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *server) start() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := node.Start(ctx, s.config())
	if err != nil {
		s.t.Fatalf("cannot start node: %v", err)
	}
	s.n = n
}

// config is the node configuration start uses.
func (s *server) config() node.Config {
	cfg := node.Config{
		DataDir:     s.dir,
		Listen:      "127.0.0.1:0",
		TokenSecret: testSecret,
		Logger:      testLogger(),
	}
	cfg.EmbeddedBroker.Addr = "127.0.0.1:0"
	cfg.Kafka.Partitions = 4
	if s.mod != nil {
		s.mod(&cfg)
	}
	return cfg
}

func (s *server) stop() {
	if s.n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.n.Shutdown(ctx); err != nil {
		s.t.Errorf("shutdown: %v", err)
	}
	s.n = nil
}

func (s *server) restart() {
	s.stop()
	s.start()
}

func (s *server) url() string { return "ws://" + s.n.Addr() + "/ws" }

func (s *server) token(account, device string, ttl time.Duration) string {
	s.t.Helper()
	tok, err := s.n.Tokens().Mint(domain.AccountID(account), domain.DeviceID(device), ttl)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// dial connects account/device and fails the test if it cannot.
func (s *server) dial(account, device string, opts ...func(*client.Config)) *client.Client {
	s.t.Helper()
	c, err := s.tryDial(account, device, opts...)
	if err != nil {
		s.t.Fatalf("dial %s/%s: %v", account, device, err)
	}
	s.t.Cleanup(c.Close)
	return c
}

// redial connects account/device again after the test closed its last
// connection: the server may not have read that close yet, and it
// refuses the hello of a device still connected (duplicate_login), which
// a client retries.
func (s *server) redial(account, device string) *client.Client {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := s.tryDial(account, device)
		if err == nil {
			s.t.Cleanup(c.Close)
			return c
		}
		if client.CodeOf(err) != wire.CodeDuplicateLogin || time.Now().After(deadline) {
			s.t.Fatalf("dial %s/%s again: %v", account, device, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) tryDial(account, device string, opts ...func(*client.Config)) (*client.Client, error) {
	cfg := client.Config{URL: s.url(), Token: s.token(account, device, time.Hour), RequestTimeout: 10 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return client.Dial(ctx, cfg)
}

// device is a connected client whose pushes feed an inbox.
type device struct {
	c     *client.Client
	inbox *client.Inbox

	mu     sync.Mutex
	pushes []wire.ServerFrame
	errs   []error
	done   chan struct{}
}

func (s *server) device(account, name string, opts ...func(*client.Config)) *device {
	s.t.Helper()
	return newDevice(s.dial(account, name, opts...))
}

// newDevice feeds the pushes of a connected client to an inbox.
func newDevice(c *client.Client) *device {
	d := &device{c: c, inbox: client.NewInbox(c), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		for f := range c.Pushes() {
			d.mu.Lock()
			d.pushes = append(d.pushes, f)
			d.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			if err := d.inbox.HandlePush(ctx, f); err != nil && !isClosed(err) {
				d.mu.Lock()
				d.errs = append(d.errs, err)
				d.mu.Unlock()
			}
			cancel()
		}
	}()
	return d
}

func isClosed(err error) bool { return err != nil && errors.Is(err, client.ErrClosed) }

// received returns a copy of the pushes so far.
func (d *device) received() []wire.ServerFrame {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]wire.ServerFrame(nil), d.pushes...)
}

// waitPushes waits until the device has n pushes.
func (d *device) waitPushes(t *testing.T, n int) []wire.ServerFrame {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if got := d.received(); len(got) >= n {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("got %d pushes, want %d", len(d.received()), n)
	return nil
}

// finalLog is the device's log of conv once it is settled: a sync at the
// end, as a client after reconnecting, must change nothing.
func (d *device) finalLog(t *testing.T, conv string, n int) []wire.Message {
	t.Helper()
	if err := d.inbox.Sync(ctxT(t), conv); err != nil {
		t.Fatal(err)
	}
	return d.waitInbox(t, conv, n)
}

// waitInbox waits until the inbox holds n messages of conv.
func (d *device) waitInbox(t *testing.T, conv string, n int) []wire.Message {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if got := d.inbox.Messages(conv); len(got) >= n {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.mu.Lock()
	errs := d.errs
	d.mu.Unlock()
	t.Fatalf("inbox holds %d messages of %s, want %d (errors: %v)", len(d.inbox.Messages(conv)), conv, n, errs)
	return nil
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// history reads a whole conversation from msgid 0 with the given client.
func history(t *testing.T, c *client.Client, conv string) []wire.Message {
	t.Helper()
	var out []wire.Message
	cur := wire.Cursor{}
	for {
		f, err := c.Sync(ctxT(t), conv, cur, 200)
		if err != nil {
			t.Fatalf("sync %s: %v", conv, err)
		}
		out = append(out, f.Messages...)
		cur = *f.Next
		if !f.HasMore {
			return out
		}
	}
}

// assertLog checks msgids strictly increase and bodies match want in order.
func assertLog(t *testing.T, who string, got []wire.Message, want []string) {
	t.Helper()
	bodies := make([]string, len(got))
	for i, m := range got {
		bodies[i] = m.Body
		if i > 0 && got[i-1].MsgID >= m.MsgID {
			t.Errorf("%s: msgid not increasing at %d: %d then %d", who, i, got[i-1].MsgID, m.MsgID)
		}
	}
	if fmt.Sprint(bodies) != fmt.Sprint(want) {
		t.Errorf("%s: got %q, want %q", who, bodies, want)
	}
}

// serveProcess runs the real binary on dir with the test secret and
// returns it with its WebSocket URL once it serves.
func serveProcess(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--broker-listen", "127.0.0.1:0",
		"--token-secret", string(testSecret))
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := make(chan string, 1)
	var logMu sync.Mutex
	var logged strings.Builder
	wsAddr := regexp.MustCompile(`ws=(ws://[^ ]+/ws)`)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logged.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if m := wsAddr.FindStringSubmatch(sc.Text()); m != nil && strings.Contains(sc.Text(), "parley serving") {
				url <- m[1]
			}
		}
	}()
	select {
	case u := <-url:
		return cmd, u
	case <-time.After(60 * time.Second):
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("parley did not start serving:\n%s", logged.String())
	}
	return nil, ""
}
