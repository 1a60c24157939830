package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/projections/runner"
	"github.com/twmb/franz-go/pkg/kfake"
)

// SASL to an external broker works with every supported mechanism, and a
// wrong password is refused; the Kafka-protocol peer is kfake with SASL on.
func TestSASL(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser(mech, "parley", "s3cret"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			l, err := Open(Config{Brokers: c.ListenAddrs(), Partitions: 2,
				Security: Security{SASLMechanism: mech, SASLUser: "parley", SASLPassword: "s3cret"}})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if _, err := l.Append(context.Background(), uuid.NewString(), sent("d:a:b", 1)); err != nil {
				t.Fatal(err)
			}
			if bad, err := Open(Config{Brokers: c.ListenAddrs(), Partitions: 2,
				Security: Security{SASLMechanism: mech, SASLUser: "parley", SASLPassword: "wrong"}}); err == nil {
				bad.Close()
				t.Fatal("a wrong password was accepted")
			}
		})
	}
}

func TestSecurityValidate(t *testing.T) {
	tests := []struct {
		name string
		s    Security
		want string
	}{
		{"unknown mechanism", Security{SASLMechanism: "GSSAPI", SASLUser: "u"}, "SASL mechanism"},
		{"SASL without user", Security{SASLMechanism: "PLAIN"}, "needs a user"},
		{"CA without TLS", Security{TLSCAFile: "/ca.pem"}, "needs TLS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
	if err := (Security{TLS: true, SASLMechanism: "SCRAM-SHA-512", SASLUser: "u"}).Validate(); err != nil {
		t.Errorf("valid security refused: %v", err)
	}
}

// TLS to an external broker works for both of the log's clients — the
// producer (franz-go) appends, a range (Sarama) reads it back — with the
// CA given in TLSCAFile; without that CA, or without TLS, Open fails.
func TestTLS(t *testing.T) {
	caFile, server := testCertificates(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(server))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := Open(Config{Brokers: c.ListenAddrs(), Partitions: 2, Security: Security{TLS: true, TLSCAFile: caFile}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pos, err := l.Append(context.Background(), uuid.NewString(), sent("d:a:b", 1))
	if err != nil {
		t.Fatal(err)
	}
	var read []runner.RawRecord
	src := l.RangeSource(map[int32]int64{pos.Partition: pos.Offset}, map[int32]int64{pos.Partition: pos.Offset + 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := src.Consume(ctx, func(_ context.Context, b runner.Batch) error { read = append(read, b.Records...); return nil }); err != nil || len(read) != 1 {
		t.Fatalf("read back over TLS: %d records, %v", len(read), err)
	}

	for name, sec := range map[string]Security{
		"the system's CAs": {TLS: true},
		"no TLS":           {},
	} {
		cfg := Config{Brokers: c.ListenAddrs(), Partitions: 2, Security: sec, AppendTimeout: 2 * time.Second}
		if bad, err := Open(cfg); err == nil {
			bad.Close()
			t.Errorf("with %s, Open reached a broker whose certificate it cannot trust", name)
		}
	}
}

// testCertificates makes a CA, writes it to a PEM file, and returns that
// file and a server configuration with a certificate it signed for
// 127.0.0.1.
func testCertificates(t *testing.T) (caFile string, server *tls.Config) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "parley test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
