package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/wire"
)

// runMainEnv makes the test binary run main instead of the tests, so that
// TestMainExitCodes drives parley as a process: its exit code and output.
const runMainEnv = "PARLEY_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// `parley token` mints a token that the data dir's secret verifies.
func TestTokenCommand(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := run([]string{"token", "--data-dir", dir, "--account", "alice", "--device", "phone"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	secret, err := auth.LoadOrCreateSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.NewTokens(secret)
	if err != nil {
		t.Fatal(err)
	}
	id, err := tokens.Verify(strings.TrimSpace(out.String()))
	if err != nil || id.Account != "alice" || id.Device != "phone" {
		t.Errorf("minted token: %+v %v", id, err)
	}
	if err := run([]string{"token", "--data-dir", dir, "--account", "bad/id"}, &out, &bytes.Buffer{}); err == nil {
		t.Error("token for an invalid account was minted")
	}
}

// Shutdown closes every connection with 1001 shutting_down.
func TestShutdownClosesWithReason(t *testing.T) {
	s := startServer(t, nil)
	c := s.dial("alice", "phone")
	s.stop()
	if code, reason := waitClosed(t, c, 10*time.Second); code != wire.CloseGoingAway || reason != wire.ReasonShuttingDown {
		t.Errorf("closed with %d %q", code, reason)
	}
}
