package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/kafka"
	"github.com/parley-chat/parley/infra/postgres/postgrestest"
	"github.com/parley-chat/parley/infra/redis/redistest"
	"github.com/parley-chat/parley/infra/tlsconfig/tlsconfigtest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// The operator's commands reach brokers that need TLS with a client
// certificate and SASL, with the flags serve takes: logout publishes, tap
// reads it back, and replay rebuilds the cache from the conversation
// topic. Without them, each fails.
func TestOpsCommandsOnASecuredBroker(t *testing.T) {
	certs := tlsconfigtest.New(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(certs.ServerAskingClients),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "parley", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := []string{"--kafka-brokers", strings.Join(c.ListenAddrs(), ",")}
	secured := append(brokers, "--kafka-tls", "--kafka-tls-ca", certs.CAFile, "--kafka-tls-cert", certs.ClientCertFile, "--kafka-tls-key", certs.ClientKeyFile,
		"--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-user", "parley", "--kafka-sasl-password", "s3cret")
	command := func(name string, flags []string, args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := run(append(append([]string{name}, flags...), args...), &out, &errOut)
		return out.String() + errOut.String(), err
	}

	out, err := command("logout", secured, "--account", "alice")
	if err != nil || !strings.Contains(out, "published UserLoggedOut.v1 for alice") {
		t.Fatalf("logout: %v %q", err, out)
	}
	out, err = command("tap", secured, "--topic", events.DefaultUsersTopic, "--from", "earliest", "--max-events", "1", "--duration", "20s")
	if err != nil || !strings.Contains(out, `"account":"alice"`) {
		t.Fatalf("tap: %v %q", err, out)
	}

	l, err := kafka.Open(kafka.Config{Brokers: c.ListenAddrs(), Partitions: 2,
		Security: kafka.Security{TLS: true, TLSCAFile: certs.CAFile, TLSCertFile: certs.ClientCertFile, TLSKeyFile: certs.ClientKeyFile, SASLMechanism: "SCRAM-SHA-256", SASLUser: "parley", SASLPassword: "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := domain.NewDraft(domain.Sender{Account: "alice", Device: "phone"}, domain.DirectConversation("alice", "bob"), "c1", "", "hi")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := l.Append(ctx, uuid.NewString(), events.NewMessageSent(uuid.NewString(), d, time.Now())); err != nil {
		t.Fatal(err)
	}
	l.Close()
	_, prefix := redistest.Client(t)
	pg := postgrestest.Config(t) // where the data keys would be
	out, err = command("replay", secured, "--partitions", "2", "--projection", "cache", "--redis-addr", redistest.Addr(), "--redis-prefix", prefix,
		"--postgres-dsn", pg.DSN, "--postgres-schema", pg.Schema)
	if err != nil || !strings.Contains(out, "replayed 1 events") {
		t.Fatalf("replay: %v %q", err, out)
	}

	// The same commands without the flags are refused by the broker.
	if out, err := command("logout", brokers, "--account", "alice"); err == nil {
		t.Errorf("logout without TLS and SASL succeeded: %q", out)
	}
	if out, err := command("tap", brokers, "--from", "earliest", "--max-events", "1", "--duration", "5s"); err == nil && strings.Contains(out, "alice") {
		t.Errorf("tap without TLS and SASL read the log: %q", out)
	}
}
