package node

import (
	parleypebble "github.com/parley-chat/parley/infra/pebble"
	"strings"
	"testing"
	"time"
)

func TestHTTPServerDefaults(t *testing.T) {
	var c HTTPServer
	c.setDefaults()
	want := HTTPServer{ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second,
		IdleTimeout: 30 * time.Second, MaxHeaderBytes: 32 << 10}
	if c != want {
		t.Errorf("defaults %+v, want %+v", c, want)
	}
	s := c.server(nil)
	if s.ReadHeaderTimeout != want.ReadHeaderTimeout || s.ReadTimeout != want.ReadTimeout || s.WriteTimeout != want.WriteTimeout ||
		s.IdleTimeout != want.IdleTimeout || s.MaxHeaderBytes != want.MaxHeaderBytes {
		t.Errorf("server %+v does not carry the bounds", s)
	}
}

func TestConfigValidateHTTPAndDevTokens(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr []string
	}{
		{name: "defaults", mod: func(*Config) {}},
		{name: "dev tokens on loopback", mod: func(c *Config) { c.Console, c.DevTokens = true, true }},
		{name: "dev tokens on localhost", mod: func(c *Config) { c.Console, c.DevTokens, c.Listen = true, true, "localhost:8080" }},
		{name: "dev tokens on all interfaces", mod: func(c *Config) { c.Console, c.DevTokens, c.Listen = true, true, ":8080" }, wantErr: []string{"--dev-tokens-unsafe"}},
		{name: "dev tokens on all interfaces, acknowledged", mod: func(c *Config) {
			c.Console, c.DevTokens, c.DevTokensUnsafe, c.Listen = true, true, true, "0.0.0.0:8080"
		}},
		{name: "negative timeouts", mod: func(c *Config) { c.HTTP.ReadTimeout, c.HTTP.IdleTimeout = -1, -1 },
			wantErr: []string{"http read timeout cannot be negative", "http idle timeout cannot be negative"}},
		{name: "the smallest store cache", mod: func(c *Config) { c.StoreCacheBytes = parleypebble.MinCacheBytes }},
		{name: "a store cache below it", mod: func(c *Config) { c.StoreCacheBytes = -1 }, wantErr: []string{"block cache needs at least 8388608 bytes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			tc.mod(&c)
			c.setDefaults()
			err := c.Validate()
			if len(tc.wantErr) == 0 && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			for _, w := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: %v, want an error with %q", err, w)
				}
			}
		})
	}
}
