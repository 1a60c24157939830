package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
)

// The console in a real browser: headless Debian chromium driven by
// playwright-core (transport/console/e2e/console.e2e.js): two pages chat
// both ways and in a group; a first sign-in is not taken for a reconnect;
// a page whose network fails reconnects by itself with every missed message
// once, in msgid order, and counts them; the event view shows the exchange
// with nothing cut, at 1280 px and as cards at phone width; unread badges
// come and go, read ticks, typing, edits and tombstones (by push and by
// sync) show, a read on one device clears the badge on another, and a
// presence push shows as a dot. Screenshots go
// to test-artifacts/console/ (the README's docs/console-*.png are copies of
// console-chat.png and console-events.png). .ci/run installs
// chromium and playwright-core; elsewhere the test is skipped when they
// are missing, and fails under CI=true.
func TestConsoleInBrowser(t *testing.T) {
	e2e, _ := filepath.Abs("../../transport/console/e2e")
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	var missing string
	if _, err := exec.LookPath("node"); err != nil {
		missing = "node is not installed"
	} else if _, err := os.Stat(chromium); err != nil {
		missing = "chromium is not installed (apt-get install chromium)"
	} else if _, err := os.Stat(filepath.Join(e2e, "node_modules", "playwright-core")); err != nil {
		missing = "playwright-core is not installed (cd transport/console/e2e && npm ci)"
	}
	if missing != "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("browser test needs what is missing: " + missing)
		}
		t.Skip("skipping the browser test: " + missing)
	}
	s := startServer(t, func(c *node.Config) { c.Console, c.DevTokens = true, true })
	artifacts, _ := filepath.Abs("../../test-artifacts/console")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "console.e2e.js", "http://"+s.n.Addr(), artifacts)
	cmd.Dir = e2e
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("console e2e failed: %v\n%s", err, out)
	}
	t.Logf("%s(screenshots in %s)", out, artifacts)
}
