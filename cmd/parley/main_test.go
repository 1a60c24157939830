package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/infra/node"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/wire"
)

// Bad configuration is refused with a message that names the flag.
func TestServeConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"zero partitions", []string{"--partitions", "0"}, nil, "--partitions 0"},
		{"epoch out of range", []string{"--log-epoch", "32"}, nil, "--log-epoch 32"},
		{"short secret", []string{"--token-secret", "short"}, nil, "--token-secret"},
		{"bad log level", []string{"--log-level", "loud"}, nil, "--log-level"},
		{"bad duration in env", nil, map[string]string{"PARLEY_LEASE": "soon"}, "PARLEY_LEASE"},
		{"stray argument", []string{"extra"}, nil, "unexpected arguments"},
		{"unknown flag", []string{"--nope"}, nil, "flag provided but not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stderr bytes.Buffer
			_, err := parseServe(tc.args, &stderr)
			if err == nil || !strings.Contains(err.Error()+stderr.String(), tc.want) {
				t.Errorf("got %v (stderr %q), want an error naming %q", err, stderr.String(), tc.want)
			}
		})
	}
	t.Run("environment sets defaults, flags override", func(t *testing.T) {
		t.Setenv("PARLEY_LISTEN", "127.0.0.1:9999")
		t.Setenv("PARLEY_LEASE", "2m")
		cfg, err := parseServe([]string{"--lease", "3m"}, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Listen != "127.0.0.1:9999" || cfg.Gateway.Lease != 3*time.Minute {
			t.Errorf("listen %q lease %v", cfg.Listen, cfg.Gateway.Lease)
		}
	})
}

// `parley token` mints a token that the data dir's secret verifies.
func TestTokenCommand(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := run([]string{"token", "--data-dir", dir, "--account", "alice", "--device", "phone"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	secret, err := node.LoadOrCreateSecret(dir)
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
