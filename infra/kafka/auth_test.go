package kafka

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/infra/tlsconfig/tlsconfigtest"
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
		{"client certificate without TLS", Security{TLSCertFile: "/c.pem", TLSKeyFile: "/c.key"}, "needs TLS"},
		{"client certificate without its key", Security{TLS: true, TLSCertFile: "/c.pem"}, "both its certificate and its key"},
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
	certs := tlsconfigtest.New(t)
	caFile, server := certs.CAFile, certs.Server
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
	appendAndReadBack(t, l)

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

// Brokers that ask for a client certificate take both of the log's
// clients' connections with the one in TLSCertFile and TLSKeyFile, and
// refuse them without it.
func TestTLSClientCertificate(t *testing.T) {
	certs := tlsconfigtest.New(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(certs.ServerAskingClients))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sec := Security{TLS: true, TLSCAFile: certs.CAFile, TLSCertFile: certs.ClientCertFile, TLSKeyFile: certs.ClientKeyFile}
	l, err := Open(Config{Brokers: c.ListenAddrs(), Partitions: 2, Security: sec})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendAndReadBack(t, l)
	cfg := Config{Brokers: c.ListenAddrs(), Partitions: 2, Security: Security{TLS: true, TLSCAFile: certs.CAFile}, AppendTimeout: 2 * time.Second}
	if bad, err := Open(cfg); err == nil {
		bad.Close()
		t.Error("brokers asking for a client certificate took a client without one")
	}
}

// appendAndReadBack appends a record through l's producer (franz-go) and
// reads it back through a range of l (Sarama): both of the log's clients.
func appendAndReadBack(t *testing.T, l *Log) {
	t.Helper()
	pos, err := l.Append(context.Background(), uuid.NewString(), sent("d:a:b", 1))
	if err != nil {
		t.Fatal(err)
	}
	var read []runner.RawRecord
	src := l.RangeSource(map[int32]int64{pos.Partition: pos.Offset}, map[int32]int64{pos.Partition: pos.Offset + 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := src.Consume(ctx, func(_ context.Context, b runner.Batch) error { read = append(read, b.Records...); return nil }); err != nil || len(read) != 1 {
		t.Fatalf("read back: %d records, %v", len(read), err)
	}
}
