package main

import (
	"net/http"
	"testing"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

// Behind an API gateway that authenticated the client, the identity comes
// from headers — but only with the shared secret; without it the headers
// are ignored and a token is required, and a wrong secret is refused.
func TestTrustedGatewayMode(t *testing.T) {
	const secret = "api-gateway-shared-secret"
	s := startServer(t, func(c *node.Config) { c.Gateway.Trusted.Secret = secret })
	headers := func(sec, account, device string) func(*client.Config) {
		return func(c *client.Config) {
			c.Token = ""
			c.Header = http.Header{}
			if sec != "" {
				c.Header.Set("X-Parley-Gateway-Secret", sec)
			}
			c.Header.Set("X-Parley-Account", account)
			c.Header.Set("X-Parley-Device", device)
		}
	}
	c := s.dial("alice", "phone", headers(secret, "alice", "web"))
	if c.Welcome().UniqueID != "alice/web" {
		t.Errorf("trusted identity: %q, want alice/web", c.Welcome().UniqueID)
	}

	// Headers without the secret are a client's claim: ignored.
	_, err := s.tryDial("x", "y", headers("", "mallory", "web"))
	if client.CodeOf(err) != wire.CodeUnauthorized {
		t.Errorf("identity headers without the secret: %v, want unauthorized", err)
	}
	for name, h := range map[string]func(*client.Config){
		"wrong secret":      headers("not-the-secret-at-all", "mallory", "web"),
		"secret's prefix":   headers(secret[:len(secret)-1], "mallory", "web"),
		"secret and more":   headers(secret+"x", "mallory", "web"),
		"malformed account": headers(secret, "bad/account", "web"),
	} {
		if _, err := s.tryDial("x", "y", h); err == nil {
			t.Errorf("%s: connection accepted", name)
		}
	}
	// Tokens still work alongside.
	s.dial("bob", "phone")
}
