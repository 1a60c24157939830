package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

// A server with --token-issuer and --token-audience accepts only tokens
// that carry both, over the socket and over HTTP; `parley token` mints
// them with the same flags.
func TestTokenIssuerAndAudience(t *testing.T) {
	const iss, aud = "https://users.example", "parley-test"
	s := startServer(t, func(c *node.Config) { c.TokenIssuer, c.TokenAudience = iss, aud })
	secret := string(testSecret)

	mint := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := run(append([]string{"token", "--token-secret", secret, "--account", "alice", "--device", "phone"}, args...), &out, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}
	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"both", mint("--token-issuer", iss, "--token-audience", aud), true},
		{"neither", mint(), false},
		{"no audience", mint("--token-issuer", iss), false},
		{"foreign issuer", mint("--token-issuer", "https://evil.example", "--token-audience", aud), false},
		{"foreign audience", mint("--token-issuer", iss, "--token-audience", "billing"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, client.Config{URL: s.url(), Token: tc.token})
			if err == nil {
				c.Close()
			}
			if tc.ok != (err == nil) || (!tc.ok && client.CodeOf(err) != wire.CodeUnauthorized) {
				t.Errorf("hello: %v, want accepted %v", err, tc.ok)
			}
			if got := apiStatus(t, s, tc.token); (got == http.StatusOK) != tc.ok {
				t.Errorf("HTTP API: %d, want accepted %v", got, tc.ok)
			}
		})
	}
}

// apiStatus is the status of GET /api/v1/groups with token.
func apiStatus(t *testing.T, s *server, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.n.Addr()+"/api/v1/groups", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Tokens that live too long, are issued in the future or write their dates
// as strings are refused at hello and by the HTTP API alike.
func TestTokenClaimsOverTheWire(t *testing.T) {
	s := startServer(t, func(c *node.Config) { c.TokenMaxLifetime = 24 * time.Hour })
	now := time.Now()
	sign := func(c jwt.MapClaims) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSecret)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	base := func(extra jwt.MapClaims) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "alice", "dev": "phone", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		for k, v := range extra {
			if v == nil {
				delete(c, k)
				continue
			}
			c[k] = v
		}
		return c
	}
	tests := []struct {
		name   string
		claims jwt.MapClaims
		want   wire.Code // "" accepted
	}{
		{"good", base(nil), ""},
		{"100-year exp", base(jwt.MapClaims{"exp": now.AddDate(100, 0, 0).Unix()}), wire.CodeUnauthorized},
		{"over the 24h maximum", base(jwt.MapClaims{"exp": now.Add(25 * time.Hour).Unix()}), wire.CodeUnauthorized},
		{"over the maximum without iat", base(jwt.MapClaims{"iat": nil, "exp": now.Add(25 * time.Hour).Unix()}), wire.CodeUnauthorized},
		{"iat in the future", base(jwt.MapClaims{"iat": now.Add(time.Minute).Unix()}), wire.CodeUnauthorized},
		{"exp as a string", base(jwt.MapClaims{"exp": "9999999999"}), wire.CodeUnauthorized},
		{"an audience", base(jwt.MapClaims{"aud": "billing"}), wire.CodeUnauthorized},
		{"expired", base(jwt.MapClaims{"exp": now.Add(-time.Minute).Unix()}), wire.CodeTokenExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := sign(tc.claims)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, client.Config{URL: s.url(), Token: tok})
			if err == nil {
				c.Close()
			}
			if got := client.CodeOf(err); got != tc.want {
				t.Errorf("hello: %v (code %q), want %q", err, got, tc.want)
			}
			wantStatus := http.StatusOK
			if tc.want != "" {
				wantStatus = http.StatusUnauthorized
			}
			if got := apiStatus(t, s, tok); got != wantStatus {
				t.Errorf("HTTP API: %d, want %d", got, wantStatus)
			}
		})
	}
}
