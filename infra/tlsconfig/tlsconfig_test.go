package tlsconfig_test

import (
	"crypto/tls"
	"net"
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
	l := listen(t, certs.Server)
	dial := func(tc *tls.Config) error {
		c, err := tls.Dial("tcp", l.Addr().String(), tc)
		if err == nil {
			c.Close()
		}
		return err
	}

	tc, err := tlsconfig.Client("Redis", tlsconfig.Files{CA: certs.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	if tc.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x, want TLS 1.2", tc.MinVersion)
	}
	if err := dial(tc); err != nil {
		t.Fatalf("with the CA file: %v", err)
	}
	system, err := tlsconfig.Client("Redis", tlsconfig.Files{})
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
		if _, err := tlsconfig.Client("Redis", tlsconfig.Files{CA: file}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Client(%s) = %v, want an error about %q", file, err, want)
		}
	}
}

// A server that asks for a client certificate accepts a client that has
// one its CA signed, and refuses one without; a certificate without its
// key (or a key that is not one) is an error before any connection.
func TestClientCertificate(t *testing.T) {
	certs := tlsconfigtest.New(t)
	l := listen(t, certs.ServerAskingClients)
	// TLS 1.3 reports a refused client certificate on the first read.
	talk := func(f tlsconfig.Files) error {
		tc, err := tlsconfig.Client("Kafka", f)
		if err != nil {
			return err
		}
		c, err := tls.Dial("tcp", l.Addr().String(), tc)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Read(make([]byte, 2))
		return err
	}
	if err := talk(tlsconfig.Files{CA: certs.CAFile, Cert: certs.ClientCertFile, Key: certs.ClientKeyFile}); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	if err := talk(tlsconfig.Files{CA: certs.CAFile}); err == nil {
		t.Fatal("a server asking for a client certificate accepted none")
	}
	for name, f := range map[string]tlsconfig.Files{
		"a certificate without its key": {Cert: certs.ClientCertFile},
		"a key without its certificate": {Key: certs.ClientKeyFile},
		"a certificate as its own key":  {Cert: certs.ClientCertFile, Key: certs.ClientCertFile},
	} {
		if _, err := tlsconfig.Client("Kafka", f); err == nil || !strings.Contains(err.Error(), "Kafka client certificate") {
			t.Errorf("%s: %v, want an error about the Kafka client certificate", name, err)
		}
	}
}

// listen runs a TLS server of cfg on a loopback port until the test ends:
// it writes "ok" on each connection whose handshake succeeded, then
// closes it.
func listen(t *testing.T, cfg *tls.Config) net.Listener {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = c.Write([]byte("ok"))
				}
			}()
		}
	}()
	return l
}
