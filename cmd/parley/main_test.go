package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	if err := run([]string{"token", "--data-dir", dir, "--account", "alice", "--ttl", "800h"}, &out, &bytes.Buffer{}); err == nil {
		t.Error("a token valid for longer than the maximum lifetime was minted")
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

// The real binary serves the embedded default, stops cleanly on SIGTERM,
// and leaves a data dir that only its owner can read.
func TestServeProcessKeepsItsDataPrivate(t *testing.T) {
	dir := t.TempDir()
	cmd, _ := serveProcess(t, filepath.Join(dir, "data"))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("parley exited with %v after SIGTERM", err)
	}
	files := 0
	err := filepath.WalkDir(filepath.Join(dir, "data"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: readable by others", path, info.Mode().Perm())
		}
		files++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 3 {
		t.Errorf("only %d entries in the data dir", files)
	}
}
