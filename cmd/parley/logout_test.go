package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/transport/wire"
)

// A UserLoggedOut event closes exactly the matching connections, with
// reason logged_out, and frees their device for a new login.
func TestLogoutClosesExactlyTheMatchingSockets(t *testing.T) {
	s := startServer(t, nil)
	phone, laptop := s.dial("alice", "phone"), s.dial("alice", "laptop")
	bob := s.dial("bob", "phone")
	logout := func(args ...string) {
		t.Helper()
		var out bytes.Buffer
		args = append([]string{"logout", "--kafka-brokers", strings.Join(s.n.BrokerAddrs(), ",")}, args...)
		if err := run(args, &out, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
	}

	logout("--account", "alice", "--device", "laptop", "--reason", "lost laptop")
	if code, reason := waitClosed(t, laptop, 10*time.Second); code != wire.CloseLoggedOut || reason != wire.ReasonLoggedOut {
		t.Errorf("laptop closed with %d %q", code, reason)
	}
	assertAlive(t, phone)
	assertAlive(t, bob)

	logout("--account", "alice")
	if code, _ := waitClosed(t, phone, 10*time.Second); code != wire.CloseLoggedOut {
		t.Errorf("phone closed with %d", code)
	}
	assertAlive(t, bob)
	// The device's route is free again.
	waitFor(t, func() bool { return len(s.n.Gateway().Online("alice")) == 0 })
	s.dial("alice", "phone")

	if err := run([]string{"logout", "--kafka-brokers", strings.Join(s.n.BrokerAddrs(), ","), "--account", "bad/id"}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Error("logout of an invalid account was published")
	}
}
