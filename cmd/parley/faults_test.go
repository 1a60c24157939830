package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/infra/faultnet"
	"github.com/parley-chat/parley/infra/routes"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

// Fault tests: real processes' network paths (gateway to broker, to
// Redis, to its peers) go through faultnet proxies that cut, slow and
// heal them while clients are connected. Each checks what a client sees
// and that every acked message is in PostgreSQL exactly once.

// sendOnce asks for one send, with no retry by the client, and returns
// the reply and how long it took.
func sendOnce(ctx context.Context, c *client.Client, to, clientMsgID, body string) (wire.ServerFrame, time.Duration, error) {
	start := time.Now()
	f, err := c.Do(ctx, wire.Request{Type: wire.TypeSend, To: to, ClientMsgID: clientMsgID, Body: body})
	return f, time.Since(start), err
}

// assertOnce checks that PostgreSQL holds every body of want in conv
// exactly once, and nothing else.
func (c *testCluster) assertOnce(conv string, want ...string) {
	c.t.Helper()
	c.waitPG(conv, len(want))
	time.Sleep(300 * time.Millisecond) // let a late duplicate land, if one would
	got := c.pgHistory(conv)
	seen := map[string]int{}
	for _, m := range got {
		seen[m.Body]++
	}
	for _, w := range want {
		if seen[w] != 1 {
			c.t.Errorf("PostgreSQL holds %q %d times, want once", w, seen[w])
		}
	}
	if len(got) != len(want) {
		c.t.Errorf("PostgreSQL holds %d messages of %s, want %d: %q", len(got), conv, len(want), bodies(got))
	}
}

// Finding 1: with its broker path cut, a gateway answers a send
// unavailable within --send-timeout; pings and renewals on the same
// connection are answered at once meanwhile; a retry while the path is
// still cut is unavailable too (the first attempt's record may yet land),
// and so are sync and conversations, within the read timeout;
// once the path heals, the client's retry with the same clientMsgId is
// acked and the message is in PostgreSQL exactly once.
func TestFaultSendFailsFastOnCutBroker(t *testing.T) {
	c := startCluster(t)
	const timeout = 2 * time.Second
	gw, p := c.faultyInstance(gatewayOnly, func(cfg *node.Config) { cfg.API.SendTimeout, cfg.API.ReadTimeout = timeout, time.Second })
	c.instance(projectorOnly)
	ctx := ctxT(t)
	alice := gw.dial("alice", "phone")
	if _, err := alice.Send(ctx, client.Target{Account: "bob"}, "before", "", "before"); err != nil {
		t.Fatal(err)
	}

	p.broker.Cut()
	type reply struct {
		err  error
		took time.Duration
	}
	sent := make(chan reply, 1)
	go func() {
		_, took, err := sendOnce(ctx, alice, "bob", "during", "during")
		sent <- reply{err, took}
	}()
	time.Sleep(200 * time.Millisecond) // the send is waiting on the log
	start := time.Now()
	if _, err := alice.Do(ctx, wire.Request{Type: wire.TypePing}); err != nil {
		t.Fatalf("ping behind a stuck send: %v", err)
	}
	if _, err := alice.Renew(ctx); err != nil {
		t.Fatalf("renew behind a stuck send: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("ping and renew behind a stuck send took %v", took)
	}
	r := <-sent
	if client.CodeOf(r.err) != wire.CodeUnavailable {
		t.Fatalf("send on a cut broker path: %v, want unavailable", r.err)
	}
	if r.took < timeout || r.took > timeout+time.Second {
		t.Errorf("send answered unavailable after %v, want about %v", r.took, timeout)
	}
	t.Logf("time to unavailable on a cut broker path: %v (--send-timeout %v)", r.took.Round(time.Millisecond), timeout)

	// The first attempt's record waits in the producer for the path: a
	// retry now must wait for it too, not append a second one.
	if _, err := alice.Do(ctx, wire.Request{Type: wire.TypeSend, To: "bob", ClientMsgID: "during", Body: "during", Retry: true}); client.CodeOf(err) != wire.CodeUnavailable {
		t.Fatalf("retry while the first attempt is undecided: %v, want unavailable", err)
	}
	// Reads that ask the log for its end give up within the read timeout.
	start = time.Now()
	if _, err := alice.Sync(ctx, "d:alice:bob", wire.Cursor{}, 10); client.CodeOf(err) != wire.CodeUnavailable {
		t.Fatalf("sync on a cut broker path: %v, want unavailable", err)
	}
	if _, err := alice.Conversations(ctx, 0); client.CodeOf(err) != wire.CodeUnavailable {
		t.Fatalf("conversations on a cut broker path: %v, want unavailable", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("sync and conversations on a cut broker path took %v, want about 2 × the 1 s read timeout", took)
	}

	p.broker.Heal()
	if _, err := alice.Resend(ctx, client.Target{Account: "bob"}, "during", "", "during"); err != nil {
		t.Fatalf("retry after the heal: %v", err)
	}
	if _, err := alice.Send(ctx, client.Target{Account: "bob"}, "after", "", "after"); err != nil {
		t.Fatal(err)
	}
	c.assertOnce("d:alice:bob", "before", "during", "after")
}

// A send cut off from the broker on one gateway stays undecided while the
// path is cut, however long: its record went out and may yet land, so a
// resend through another, healthy gateway is unavailable all along (it
// must not append a second record that the first would then join), and
// once the path heals the first record lands and the resend gets its
// ack. The cut outlasts the producer's request timeout (20 s), past which
// a producer allowed to cancel requests under way gave the record up.
func TestFaultUndecidedSendHoldsAcrossGateways(t *testing.T) {
	c := startCluster(t)
	a, p := c.faultyInstance(gatewayOnly, func(cfg *node.Config) { cfg.API.SendTimeout, cfg.API.ReadTimeout = time.Second, time.Second })
	b := c.instance(gatewayOnly, func(cfg *node.Config) { cfg.API.ReadTimeout = time.Second })
	c.instance(projectorOnly)
	ctx := ctxT(t)
	phone, laptop := a.dial("alice", "phone"), b.dial("alice", "laptop")
	if _, err := phone.Send(ctx, client.Target{Account: "bob"}, "before", "", "before"); err != nil {
		t.Fatal(err)
	}
	p.broker.Cut()
	if _, _, err := sendOnce(ctx, phone, "bob", "during", "during"); client.CodeOf(err) != wire.CodeUnavailable {
		t.Fatalf("send on a cut broker path: %v, want unavailable", err)
	}
	undecided := func() float64 {
		_, m := httpGet(t, "http://"+a.n.Addr()+"/metrics")
		return metric(t, m, "parley_sends_undecided")
	}
	if n := undecided(); n != 1 {
		t.Errorf("parley_sends_undecided during the cut = %v, want 1", n)
	}
	resend := wire.Request{Type: wire.TypeSend, To: "bob", ClientMsgID: "during", Body: "during", Retry: true}
	for start := time.Now(); time.Since(start) < 24*time.Second; time.Sleep(500 * time.Millisecond) {
		if f, err := laptop.Do(ctx, resend); client.CodeOf(err) != wire.CodeUnavailable {
			t.Fatalf("resend through the healthy gateway %v into the cut: %+v %v, want unavailable", time.Since(start).Round(time.Second), f, err)
		}
	}
	p.broker.Heal()
	var ack wire.ServerFrame
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		f, err := laptop.Do(ctx, resend)
		if err == nil {
			ack = f
			break
		}
		if client.CodeOf(err) != wire.CodeUnavailable || time.Since(start) > 15*time.Second {
			t.Fatalf("resend after the heal: %v", err)
		}
	}
	if !ack.Duplicate {
		t.Errorf("resend after the heal: %+v, want the first attempt's ack (duplicate)", ack)
	}
	if n := undecided(); n != 0 {
		t.Errorf("parley_sends_undecided once the record landed = %v, want 0", n)
	}
	c.assertOnce("d:alice:bob", "before", "during")
}

// A gateway shut down while a send's record is undecided lets the log
// settle it before its service stops: the record that lands completes
// the reservation, instead of leaving it pending for its lease to lapse —
// a window in which a resend through another gateway would look for the
// message before it landed and append it again.
func TestFaultShutdownSettlesUndecidedSends(t *testing.T) {
	c := startCluster(t)
	a, p := c.faultyInstance(gatewayOnly, func(cfg *node.Config) { cfg.API.SendTimeout = time.Second })
	c.instance(projectorOnly)
	ctx := ctxT(t)
	phone := a.dial("alice", "phone")
	if _, err := phone.Send(ctx, client.Target{Account: "bob"}, "before", "", "before"); err != nil {
		t.Fatal(err)
	}
	p.broker.Cut()
	if _, _, err := sendOnce(ctx, phone, "bob", "during", "during"); client.CodeOf(err) != wire.CodeUnavailable {
		t.Fatalf("send on a cut broker path: %v, want unavailable", err)
	}
	healed := time.AfterFunc(time.Second, p.broker.Heal)
	defer healed.Stop()
	if err := a.n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if state, err := c.rdb.HGet(ctx, c.prefix+"idem:alice:during", "s").Result(); err == nil && state != "d" {
		t.Errorf("the reservation after the shutdown: state %q, want done (or forgotten once done)", state)
	}
	c.assertOnce("d:alice:bob", "before", "during")
}

// A slow broker path (1 s each way) still acks sends within the send
// timeout, concurrent sends batched together; the test reports the ack
// latency.
func TestFaultSendOnSlowBroker(t *testing.T) {
	c := startCluster(t)
	gw, p := c.faultyInstance(gatewayOnly)
	c.instance(projectorOnly)
	ctx := ctxT(t)
	alice := gw.dial("alice", "phone")
	if _, err := alice.Send(ctx, client.Target{Account: "bob"}, "warm", "", "warm"); err != nil {
		t.Fatal(err)
	}
	p.broker.Delay(time.Second)
	const n = 5
	type reply struct {
		err  error
		took time.Duration
	}
	replies := make(chan reply, n)
	devices := make([]*client.Client, n)
	for i := range devices {
		devices[i] = gw.dial("alice", fmt.Sprint("d", i))
	}
	want := []string{"warm"}
	for i, d := range devices {
		want = append(want, fmt.Sprint("slow-", i))
		go func() {
			_, took, err := sendOnce(ctx, d, "bob", fmt.Sprint("slow-", i), fmt.Sprint("slow-", i))
			replies <- reply{err, took}
		}()
	}
	var worst time.Duration
	for range n {
		r := <-replies
		if r.err != nil {
			t.Errorf("send on a 1s path: %v", r.err)
		}
		worst = max(worst, r.took)
	}
	t.Logf("ack latency of %d concurrent sends on a broker path of 1s each way: at most %v", n, worst.Round(time.Millisecond))
	p.broker.Heal()
	c.assertOnce("d:alice:bob", want...)
}

// Finding 2: /readyz answers within its budget whatever is cut — the
// broker (whose offset lookup used to hang) or Redis (which used to take
// 5 s) — with each check's own result, and each change of a check is
// logged once, however often it is probed, and exported as a gauge.
func TestFaultReadinessAnswers(t *testing.T) {
	c := startCluster(t)
	logs := &lockedBuffer{}
	gw, p := c.faultyInstance(node.Roles{Gateway: true, Projector: true}, func(cfg *node.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	readyz := func() (int, string, time.Duration) {
		t.Helper()
		start := time.Now()
		code, body := httpGet(t, "http://"+gw.n.Addr()+"/readyz")
		return code, body, time.Since(start)
	}
	if code, body, _ := readyz(); code != 200 {
		t.Fatalf("/readyz before any fault: %d %s", code, body)
	}
	budget := node.ReadyCheckTimeout + 500*time.Millisecond
	for _, cut := range []struct {
		name   string
		path   *faultnet.Proxy
		failed string
	}{{"broker", p.broker, `"bus":"cannot read the end`}, {"redis", p.redis, `"cache":"context deadline exceeded"`}} {
		cut.path.Cut()
		for i := range 3 {
			code, body, took := readyz()
			if code != 503 || !strings.Contains(body, cut.failed) || !strings.Contains(body, `"store":"ok"`) {
				t.Errorf("%s cut, probe %d: %d %s", cut.name, i, code, body)
			}
			if took > budget {
				t.Errorf("%s cut, probe %d: /readyz took %v, want at most %v", cut.name, i, took, budget)
			}
			if i == 0 {
				t.Logf("/readyz with the %s path cut answered in %v", cut.name, took.Round(time.Millisecond))
			}
		}
		_, metrics := httpGet(t, "http://"+gw.n.Addr()+"/metrics")
		check := map[string]string{"broker": "bus", "redis": "cache"}[cut.name]
		if v := metric(t, metrics, `parley_ready_check{check="`+check+`"}`); v != 0 {
			t.Errorf("%s cut: parley_ready_check of %s is %v, want 0", cut.name, check, v)
		}
		cut.path.Heal()
		waitFor(t, func() bool { code, _, _ := readyz(); return code == 200 })
		readyz()
		if n := strings.Count(logs.String(), `readiness check fails" check=`+check); n != 1 {
			t.Errorf("%s cut: the failure of %s was logged %d times, want once", cut.name, check, n)
		}
		if n := strings.Count(logs.String(), `readiness check passes again" check=`+check); n != 1 {
			t.Errorf("%s cut: the recovery of %s was logged %d times, want once", cut.name, check, n)
		}
	}
}

// Finding 3: pushes forwarded to a gateway whose link then breaks — cut,
// the forwards held in the socket, then the connection dropped — are not
// lost silently: the devices they were for are closed with 4005
// slow_consumer once the link carries again, and a device that syncs then
// has every message. The pushes it got before are gap-free.
func TestFaultBrokenLinkClosesDevices(t *testing.T) {
	c := startCluster(t)
	gw, p := c.faultyInstance(gatewayOnly)
	c.instance(projectorOnly)
	ctx := ctxT(t)
	alice := gw.dial("alice", "phone")
	bob := gw.device("bob", "phone")
	if _, err := alice.Send(ctx, client.Target{Account: "bob"}, "m0", "", "m0"); err != nil {
		t.Fatal(err)
	}
	bob.waitPushes(t, 1)

	p.peers.Cut()
	want := []string{"m0"}
	for i := 1; i <= 5; i++ {
		body := fmt.Sprint("m", i)
		want = append(want, body)
		if _, err := alice.Send(ctx, client.Target{Account: "bob"}, body, "", body); err != nil {
			t.Fatal(err)
		}
	}
	c.waitPG("d:alice:bob", len(want))
	time.Sleep(500 * time.Millisecond) // the forwards are written into the cut link
	p.peers.Reset()
	p.peers.Heal()
	broke := time.Now()
	code, reason := waitClosed(t, bob.c, 20*time.Second)
	if code != wire.CloseSlowConsumer || reason != wire.ReasonSlowConsumer {
		t.Fatalf("bob closed with %d %q, want 4005 slow_consumer", code, reason)
	}
	t.Logf("device closed %v after its gateway's link broke", time.Since(broke).Round(time.Millisecond))
	assertPushChain(t, "bob before the close", bob.received(), "d:alice:bob")

	back := gw.device("bob", "phone")
	if err := back.inbox.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	assertLog(t, "bob after resync", back.inbox.Messages("d:alice:bob"), want)
	c.assertOnce("d:alice:bob", want...)
}

// Finding 5: a gateway cut off from Redis closes its own connections with
// 4011 route_lost before its liveness lapses, so when the device says
// hello on another gateway (once the lapse lets the route go, under the
// default reject policy) it has one live connection, and the heal closes
// nothing.
func TestFaultRedisCutFencesGateway(t *testing.T) {
	c := startCluster(t)
	gw1, p := c.faultyInstance(gatewayOnly)
	gw2 := c.instance(gatewayOnly)
	alice := gw1.dial("alice", "phone")

	p.redis.Cut()
	cut := time.Now()
	code, reason := waitClosed(t, alice, 20*time.Second)
	if code != wire.CloseRouteLost || reason != wire.ReasonRouteLost {
		t.Fatalf("alice on the cut gateway closed with %d %q, want 4011 route_lost", code, reason)
	}
	fenced := time.Since(cut)
	if fenced >= routes.AliveTTL {
		t.Errorf("closed %v after the cut, not before the liveness key lapses (%v)", fenced, routes.AliveTTL)
	}
	var back *client.Client
	waitFor(t, func() bool {
		var err error
		back, err = gw2.tryDial("alice", "phone")
		return err == nil
	})
	t.Cleanup(back.Close)
	t.Logf("Redis cut: device closed by its gateway after %v, served again on another gateway after %v",
		fenced.Round(100*time.Millisecond), time.Since(cut).Round(100*time.Millisecond))

	p.redis.Heal()
	time.Sleep(time.Second) // several reasserts of gw1
	assertAlive(t, back)
}

// Finding 4: with the path between two gateways cut, a hello on the second
// for a device live on the first is refused duplicate_login — the first
// still beats its liveness and may serve the device — and the live
// connection stays, whatever the second can or cannot reach.
func TestFaultLinkCutKeepsOneLogin(t *testing.T) {
	c := startCluster(t)
	gw1, p := c.faultyInstance(gatewayOnly)
	gw2 := c.instance(gatewayOnly)
	c.instance(projectorOnly)
	alice := gw1.device("alice", "phone")
	p.peers.Cut()
	_, err := gw2.tryDial("alice", "phone")
	if client.CodeOf(err) != wire.CodeDuplicateLogin {
		t.Fatalf("hello on the other gateway during the cut: %v, want duplicate_login", err)
	}
	p.peers.Heal()
	time.Sleep(time.Second) // several reasserts of both gateways
	assertAlive(t, alice.c)
	bob := gw2.dial("bob", "phone")
	if _, err := bob.Send(ctxT(t), client.Target{Account: "alice"}, "after", "", "after the heal"); err != nil {
		t.Fatal(err)
	}
	alice.waitPushes(t, 1)
}

// Finding 6: a gateway whose broker connections are all closed by the
// other side (a proxy or broker restarted) reconnects, and the sockets it
// does not close at once do not pile up. A Kafka client does not read an
// idle connection, so a broker's close leaves it in CLOSE_WAIT until the
// client uses it again (franz-go also closes one idle for 20 s; Sarama
// never uses its first, seed, connection again after the first metadata
// request). That is at most two per Kafka client of the process (its
// seed and one broker connection it left idle; the clients are the log's
// franz-go client and the logout reader's Sarama one), whatever the
// number of faults.
func TestFaultBrokerResetsLeaveNoSocketPile(t *testing.T) {
	c := startCluster(t)
	gw, p := c.faultyInstance(gatewayOnly)
	c.instance(projectorOnly)
	ctx := ctxT(t)
	alice := gw.dial("alice", "phone")
	port := portOf(t, p.broker.Addr())
	const clients = 2
	for r := range 5 {
		body := fmt.Sprint("after-reset-", r)
		if _, err := alice.Send(ctx, client.Target{Account: "bob"}, body, "", body); err != nil {
			t.Fatalf("send after reset %d: %v", r, err)
		}
		if n := closeWaitTo(t, port); n > 2*clients {
			t.Fatalf("after %d resets of the broker path, %d sockets to it in CLOSE_WAIT, want at most %d", r, n, 2*clients)
		}
		p.broker.Reset()
	}
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	port, err := strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// closeWaitTo counts this process's TCP sockets to port that the peer
// closed and this side has not (CLOSE_WAIT, state 08 in /proc/net/tcp).
func closeWaitTo(t *testing.T, port int) (n int) {
	t.Helper()
	for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 4 || fs[3] != "08" {
				continue
			}
			remote := fs[2]
			p, err := strconv.ParseInt(remote[strings.LastIndexByte(remote, ':')+1:], 16, 32)
			if err == nil && int(p) == port {
				n++
			}
		}
		_ = fh.Close()
	}
	return n
}
