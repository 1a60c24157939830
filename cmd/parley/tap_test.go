package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/transport/client"
)

func tapRun(t *testing.T, s *server, args ...string) []tapLine {
	t.Helper()
	var out bytes.Buffer
	args = append([]string{"tap", "--kafka-brokers", strings.Join(s.n.BrokerAddrs(), ","), "--idle-exit", "1500ms", "--duration", "20s"}, args...)
	if err := run(args, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var lines []tapLine
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var l tapLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not NDJSON: %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines
}

// The tap prints every event exactly once per run as NDJSON with its
// position and msgid, filters by type, and with a group resumes where the
// last run stopped; the server keeps delivering meanwhile.
func TestTap(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	alice := s.dial("alice", "phone")
	bob := s.device("bob", "phone")
	if _, err := alice.CreateGroup(ctx, "g", "bob"); err != nil {
		t.Fatal(err)
	}
	acks := map[int64]bool{}
	for i := 0; i < 5; i++ {
		ack, err := alice.Send(ctx, client.Target{Account: "bob"}, fmt.Sprint(i), "", fmt.Sprint("m", i))
		if err != nil {
			t.Fatal(err)
		}
		acks[ack.MsgID] = true
	}

	all := tapRun(t, s, "--from", "earliest")
	if len(all) != 6 {
		t.Fatalf("tap printed %d events, want 6 (1 group, 5 messages)", len(all))
	}
	seen := map[string]bool{}
	for _, l := range all {
		pos := fmt.Sprint(l.Partition, "/", l.Offset)
		if seen[pos] {
			t.Errorf("event at %s printed twice", pos)
		}
		seen[pos] = true
		if l.Event == "MessageSent.v1" && !acks[l.MsgID] {
			t.Errorf("msgid %d of %s is no ack's", l.MsgID, pos)
		}
	}
	msgs := tapRun(t, s, "--from", "earliest", "--types", "MessageSent.v1")
	if len(msgs) != 5 {
		t.Errorf("--types MessageSent.v1 printed %d, want 5", len(msgs))
	}

	if got := tapRun(t, s, "--from", "earliest", "--group", "analytics-test"); len(got) != 6 {
		t.Fatalf("first group run printed %d, want 6", len(got))
	}
	for i := 5; i < 7; i++ {
		if _, err := alice.Send(ctx, client.Target{Account: "bob"}, fmt.Sprint(i), "", fmt.Sprint("m", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := tapRun(t, s, "--from", "earliest", "--group", "analytics-test"); len(got) != 2 {
		t.Errorf("resumed group run printed %d, want the 2 new events", len(got))
	}
	// Delivery went on regardless.
	bob.waitPushes(t, 7)

	if err := run([]string{"tap", "--group", "g", "--from", time.Now().Format(time.RFC3339)}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Error("--from TIME with --group accepted")
	}
}
