package tlsconfig_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parley-chat/parley/infra/tlsconfig"
	"github.com/parley-chat/parley/infra/tlsconfig/tlsconfigtest"
)

// A client trusting the CA file reaches a server that CA signed; one with
// the system's CAs does not; a missing or empty CA file is an error.
func TestClient(t *testing.T) {
	certs := tlsconfigtest.New(t)
	l, err := tls.Listen("tcp", "127.0.0.1:0", certs.Server)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	dial := func(tc *tls.Config) error {
		c, err := tls.Dial("tcp", l.Addr().String(), tc)
		if err == nil {
			c.Close()
		}
		return err
	}

	tc, err := tlsconfig.Client("Redis", certs.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if tc.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x, want TLS 1.2", tc.MinVersion)
	}
	if err := dial(tc); err != nil {
		t.Fatalf("with the CA file: %v", err)
	}
	system, err := tlsconfig.Client("Redis", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(system); err == nil {
		t.Fatal("the system's CAs trusted a test CA's certificate")
	}

	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{"/nonexistent/ca.pem": "cannot read the Redis CA file", empty: "no certificate"} {
		if _, err := tlsconfig.Client("Redis", file); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Client(%s) = %v, want an error about %q", file, err, want)
		}
	}
}
