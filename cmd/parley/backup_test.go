package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/infra/backup"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

const backupCredential = "backup-test-service-credential"

// sentMessage is a message the test sent and had acknowledged.
type sentMessage struct {
	account, conv, clientMsgID, body string
	msgID                            int64
	acked                            time.Time
}

// serviceSend sends body from account to bob as a service over the HTTP
// API (backupCredential): a socket for each new account would spend the
// tests' time on the per-address hello limits.
func serviceSend(ctx context.Context, s *server, account, clientMsgID, body string) (wire.ServerFrame, error) {
	req, err := json.Marshal(map[string]any{"from": map[string]string{"account": account, "device": "phone"},
		"to": "bob", "clientMsgId": clientMsgID, "body": body})
	if err != nil {
		return wire.ServerFrame{}, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.n.Addr()+"/api/v1/messages", bytes.NewReader(req))
	if err != nil {
		return wire.ServerFrame{}, err
	}
	hr.Header.Set("Authorization", "Bearer svc:"+backupCredential)
	hr.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		return wire.ServerFrame{}, err
	}
	defer res.Body.Close()
	var ack wire.ServerFrame
	if err := json.NewDecoder(res.Body).Decode(&ack); err != nil || res.StatusCode != http.StatusOK {
		return ack, fmt.Errorf("send as %s: %d, %v", account, res.StatusCode, err)
	}
	return ack, nil
}

// TestBackupWhileSending backs up a node while new accounts send their
// first messages (each a new data key, stored before the message is
// appended), restores the backup into a new data directory and starts a
// node on it: every message acknowledged before the backup began is there
// with its msgid and body; one acknowledged while it ran is there whole or
// not at all (never without its key); none acknowledged after it ended.
func TestBackupWhileSending(t *testing.T) {
	lift := func(c *node.Config) {
		c.ServiceCredential = backupCredential
		c.Gateway.MaxConnectionsPerIP = -1 // and the HTTP API's limits per address
		c.Gateway.RatePerSecond, c.Gateway.RateBurst = 1e6, 1e6
		// The check below reads back every conversation written, more
		// than an account's read budget holds on a fast box.
		c.API.ReadRate, c.API.ReadBurst = 1e6, 1e6
	}
	s := startServer(t, lift)
	// The harness gives the token secret by flag; a file of that name in
	// the data dir must still come back.
	if err := os.WriteFile(filepath.Join(s.dir, "token.secret"), []byte("kept\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	var (
		mu   sync.Mutex
		sent []sentMessage
	)
	sendFirst := func(account string) error {
		body := "the first words of " + account
		ack, err := serviceSend(ctx, s, account, "first", body)
		if err != nil {
			return err
		}
		mu.Lock()
		sent = append(sent, sentMessage{account: account, conv: ack.Conversation, clientMsgID: "first", body: body, msgID: ack.MsgID, acked: time.Now()})
		mu.Unlock()
		return nil
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := sendFirst(fmt.Sprintf("w%d-%d", g, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	file := filepath.Join(t.TempDir(), "parley.tar")
	began := time.Now()
	var out bytes.Buffer
	if err := run([]string{"backup", "--out", file, "--url", "http://" + s.n.Addr(), "--service-credential", backupCredential}, &out, &out); err != nil {
		t.Fatalf("backup: %v (%s)", err, out.String())
	}
	ended := time.Now()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if !strings.HasPrefix(out.String(), "backed up ") {
		t.Errorf("backup said %q", out.String())
	}
	if _, err := os.Stat(file + ".partial"); !os.IsNotExist(err) {
		t.Errorf("the partial file is left: %v", err)
	}
	res, err := http.Get("http://" + s.n.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{`parley_backups_total{result="ok"} 1`, "parley_backup_last_success_timestamp_seconds 1.", "parley_backup_last_bytes "} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	out.Reset()
	if err := run([]string{"restore", "--check", "--from", file}, &out, &out); err != nil || !strings.HasPrefix(out.String(), "the backup is whole: ") {
		t.Fatalf("restore --check: %v (%s)", err, out.String())
	}
	restored := filepath.Join(t.TempDir(), "restored")
	out.Reset()
	if err := run([]string{"restore", "--from", file, "--data-dir", restored}, &out, &out); err != nil {
		t.Fatalf("restore: %v (%s)", err, out.String())
	}
	if b, err := os.ReadFile(filepath.Join(restored, "token.secret")); err != nil || string(b) != "kept\n" {
		t.Errorf("the token secret file: %q, %v", b, err)
	}
	r := &server{t: t, dir: restored, mod: lift}
	r.start()
	t.Cleanup(r.stop)
	bob := r.dial("bob", "laptop")
	var before, during, after, kept int
	for _, m := range sent {
		got := history(t, bob, m.conv)
		switch {
		case m.acked.Before(began):
			before++
			if len(got) != 1 || got[0].MsgID != m.msgID || got[0].Body != m.body {
				t.Errorf("%s, acknowledged before the backup: restored as %+v, want msgid %d %q", m.account, got, m.msgID, m.body)
			}
		case m.acked.After(ended):
			after++
			if len(got) != 0 {
				t.Errorf("%s, acknowledged after the backup: restored as %+v", m.account, got)
			}
		default:
			during++
			if len(got) == 0 {
				continue
			}
			kept++
			if len(got) != 1 || got[0].MsgID != m.msgID || got[0].Body != m.body {
				t.Errorf("%s, acknowledged during the backup: restored as %+v, want msgid %d %q", m.account, got, m.msgID, m.body)
			}
		}
	}
	t.Logf("%d messages before the backup, %d during it (%d of them in it), %d after", before, during, kept, after)
	if before == 0 || after == 0 {
		t.Fatalf("the test sent %d messages before the backup and %d after: it proves nothing", before, after)
	}

	// The restored node moved to the next log epoch: a msgid that the
	// first node handed out after the backup is never handed out again.
	if _, err := os.Stat(filepath.Join(restored, node.RestoredMarker)); !os.IsNotExist(err) {
		t.Errorf("the marker is left after the first start: %v", err)
	}
	if moved, _ := filepath.Glob(filepath.Join(restored, "log.restored-e1-*")); len(moved) != 1 {
		t.Errorf("the backup's log moved aside: %v", moved)
	}
	// A sync from a recent time (which the 7-day cache answers on a node
	// that has run a while) finds the restored messages too.
	recent, err := bob.Sync(ctx, sent[0].conv, wire.Cursor{LastTime: sent[0].acked.Add(-time.Minute).UnixMilli()}, 50)
	if err != nil || len(recent.Messages) != 1 || recent.Messages[0].MsgID != sent[0].msgID {
		t.Fatalf("a recent sync on the restored node: %+v, %v", recent, err)
	}
	var highest int64
	for _, m := range sent {
		highest = max(highest, m.msgID)
	}
	// The restored node knows what it accepted: a resend is answered with
	// the first ack, and a new message takes a msgid above every one the
	// first node handed out.
	first := sent[0]
	c := r.dial(first.account, "phone")
	f, err := c.Send(ctx, client.Target{Account: "bob"}, first.clientMsgID, "", first.body)
	if err != nil || f.MsgID != first.msgID {
		t.Fatalf("a resend on the restored node: %+v, %v; want msgid %d", f, err, first.msgID)
	}
	f, err = c.Send(ctx, client.Target{Account: "bob"}, "second", "", "after the restore")
	if err != nil {
		t.Fatal(err)
	}
	if got := history(t, bob, first.conv); len(got) != 2 || got[1].MsgID != f.MsgID || got[1].Body != "after the restore" {
		t.Fatalf("after the restore: %+v", got)
	}
	if f.MsgID <= highest {
		t.Fatalf("a new message on the restored node took msgid %d, at or below %d, the first node's highest", f.MsgID, highest)
	}
	// A restart stays in the new epoch.
	r.restart()
	c = r.dial(first.account, "laptop")
	g, err := c.Send(ctx, client.Target{Account: "bob"}, "third", "", "after a restart")
	if err != nil || g.MsgID <= f.MsgID || g.MsgID>>48 != f.MsgID>>48 {
		t.Fatalf("after a restart: %+v, %v; want a msgid after %d in its epoch", g, err, f.MsgID)
	}
}

// A data directory that a restore left half moved into place is refused.
func TestStartRefusesAnUnfinishedRestore(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, ".restoring"), 0o700); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, dir: dir}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := node.Start(ctx, s.config())
	if err == nil {
		n.Shutdown(ctx)
		t.Fatal("a node started on a half-restored data directory")
	}
	if !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("got %v", err)
	}
}

// TestBackupRefusals: the command checks its flags, will not overwrite a
// file, and a restore will not write over a data directory.
func TestBackupRefusals(t *testing.T) {
	s := startServer(t, func(c *node.Config) { c.ServiceCredential = backupCredential })
	dir := t.TempDir()
	exists := filepath.Join(dir, "exists.tar")
	os.WriteFile(exists, []byte("mine"), 0o600)
	// Whole, but not a node's: only a token secret and its manifest.
	foreign := filepath.Join(dir, "foreign.tar")
	var tarred bytes.Buffer
	if err := backup.Write(&tarred, []backup.File{{Name: "token.secret", Size: 4, Data: strings.NewReader("abcd")}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(foreign, tarred.Bytes(), 0o600)
	url := "http://" + s.n.Addr()
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no file":             {[]string{"backup", "--url", url, "--service-credential", backupCredential}, "--out"},
		"no credential":       {[]string{"backup", "--url", url, "--out", filepath.Join(dir, "a.tar")}, "--service-credential"},
		"wrong credential":    {[]string{"backup", "--url", url, "--out", filepath.Join(dir, "b.tar"), "--service-credential", backupCredential + "x"}, "401"},
		"existing file":       {[]string{"backup", "--url", url, "--out", exists, "--service-credential", backupCredential}, "exists"},
		"a tiny rate":         {[]string{"backup", "--url", url, "--out", filepath.Join(dir, "c.tar"), "--service-credential", backupCredential, "--rate", "1000"}, "--rate"},
		"restore, no file":    {[]string{"restore", "--data-dir", filepath.Join(dir, "d")}, "--from"},
		"restore over data":   {[]string{"restore", "--from", exists, "--data-dir", s.dir}, "not empty"},
		"restore, not tar":    {[]string{"restore", "--from", exists, "--data-dir", filepath.Join(dir, "e")}, "cannot restore"},
		"check, not tar":      {[]string{"restore", "--check", "--from", exists}, "not whole"},
		"not a node's":        {[]string{"restore", "--from", foreign, "--data-dir", filepath.Join(dir, "f")}, "not a Parley node's backup"},
		"check, not a node's": {[]string{"restore", "--check", "--from", foreign}, "not a Parley node's backup"},
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(tc.args, &out, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
	if b, _ := os.ReadFile(exists); string(b) != "mine" {
		t.Fatalf("the existing file became %q", b)
	}
	for _, f := range []string{"a.tar", "b.tar", "b.tar.partial"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s is left: %v", f, err)
		}
	}
}

// A node shut down while a backup streams to a client that stopped
// reading ends the backup first (its stream is cut) and removes its
// scratch directory before the store closes.
func TestShutdownDuringBackup(t *testing.T) {
	s := startServer(t, func(c *node.Config) {
		c.ServiceCredential = backupCredential
		c.Gateway.MaxConnectionsPerIP = -1
	})
	ctx := ctxT(t)
	body := strings.Repeat("x", 8<<10)
	for i := range 1500 { // 12 MB of log, more than the socket buffers hold
		if _, err := serviceSend(ctx, s, "alice", fmt.Sprint("m", i), body); err != nil {
			t.Fatal(err)
		}
	}
	hr, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.n.Addr()+"/api/v1/backup", nil)
	hr.Header.Set("Authorization", "Bearer svc:"+backupCredential)
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if _, err := io.ReadFull(res.Body, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, ".backup")); err != nil {
		t.Fatalf("the backup is not streaming: %v", err)
	}
	done := make(chan struct{})
	go func() { s.stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("shutdown waits for a client that does not read")
	}
	if _, err := os.Stat(filepath.Join(s.dir, ".backup")); !os.IsNotExist(err) {
		t.Errorf("the backup's scratch directory is left: %v", err)
	}
	if _, err := io.Copy(io.Discard, res.Body); err == nil {
		t.Error("the cut stream read to a clean end")
	}
}

// One backup restored twice: the second copy, started with a --log-epoch
// above the first copy's, hands out msgids above both, and reads the
// restored log in its own epoch (its messages keep their msgids).
func TestRestoreOneBackupTwice(t *testing.T) {
	s := startServer(t, func(c *node.Config) { c.ServiceCredential = backupCredential })
	ctx := ctxT(t)
	before, err := serviceSend(ctx, s, "alice", "before", "before the backup")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "b.tar")
	var out bytes.Buffer
	// Paced: the backup reads no faster than --rate.
	began := time.Now()
	if err := run([]string{"backup", "--out", file, "--url", "http://" + s.n.Addr(), "--service-credential", backupCredential, "--rate", "65536"}, &out, &out); err != nil {
		t.Fatal(err, out.String())
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if least := time.Duration(float64(st.Size()) / 65536 * 0.9 * float64(time.Second)); time.Since(began) < least {
		t.Errorf("%d bytes at 65536 a second took %v, less than %v", st.Size(), time.Since(began), least)
	}
	restore := func(epoch uint8) (*server, wire.ServerFrame) {
		dir := filepath.Join(t.TempDir(), "restored")
		if err := run([]string{"restore", "--from", file, "--data-dir", dir}, &out, &out); err != nil {
			t.Fatal(err, out.String())
		}
		r := &server{t: t, dir: dir, mod: func(c *node.Config) {
			c.ServiceCredential = backupCredential
			c.Kafka.Epoch = epoch
		}}
		r.start()
		t.Cleanup(r.stop)
		bob := r.dial("bob", "phone")
		if got := history(t, bob, before.Conversation); len(got) != 1 || got[0].MsgID != before.MsgID {
			t.Fatalf("restored at epoch %d: %+v, want msgid %d", epoch, got, before.MsgID)
		}
		after, err := serviceSend(ctx, r, "alice", fmt.Sprint("after-e", epoch), "after the restore")
		if err != nil {
			t.Fatal(err)
		}
		return r, after
	}
	_, first := restore(0)
	_, second := restore(3)
	if first.MsgID>>48 != 2 || second.MsgID>>48 != 3 || second.MsgID <= first.MsgID {
		t.Fatalf("the copies' first msgids: %d (epoch %d) and %d (epoch %d), want epochs 2 and 3",
			first.MsgID, first.MsgID>>48, second.MsgID, second.MsgID>>48)
	}
}
