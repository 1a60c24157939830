package kafka

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
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
