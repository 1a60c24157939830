package kafka

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/IBM/sarama"
	"github.com/parley-chat/parley/infra/tlsconfig"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	kscram "github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/xdg-go/scram"
)

// Security configures how Parley authenticates to external brokers.
type Security struct {
	// TLS enables TLS to the brokers.
	TLS bool
	// TLSCAFile is a PEM bundle of CAs to trust; empty uses the system pool.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are PEM files of a client certificate and
	// its key, for brokers that ask for one (ssl.client.auth=required);
	// both or neither, and they need TLS.
	TLSCertFile, TLSKeyFile string
	// TLSInsecureSkipVerify disables certificate checks (tests only).
	TLSInsecureSkipVerify bool
	// SASLMechanism is "", "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512".
	SASLMechanism string
	// SASLUser and SASLPassword are the SASL credentials.
	SASLUser, SASLPassword string
}

// Validate reports every problem of s at once.
func (s Security) Validate() error {
	var errs []error
	switch s.SASLMechanism {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		errs = append(errs, fmt.Errorf("kafka: SASL mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.SASLMechanism))
	}
	if s.SASLMechanism != "" && s.SASLUser == "" {
		errs = append(errs, errors.New("kafka: SASL needs a user"))
	}
	if s.TLSCAFile != "" && !s.TLS {
		errs = append(errs, errors.New("kafka: a TLS CA file needs TLS enabled"))
	}
	if (s.TLSCertFile != "" || s.TLSKeyFile != "") && !s.TLS {
		errs = append(errs, errors.New("kafka: a TLS client certificate needs TLS enabled"))
	}
	if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
		errs = append(errs, errors.New("kafka: a TLS client certificate needs both its certificate and its key file"))
	}
	return errors.Join(errs...)
}

// tlsConfig is the TLS configuration to the brokers, nil without TLS.
func (s Security) tlsConfig() (*tls.Config, error) {
	if !s.TLS {
		return nil, nil
	}
	tc, err := tlsconfig.Client("Kafka", tlsconfig.Files{CA: s.TLSCAFile, Cert: s.TLSCertFile, Key: s.TLSKeyFile})
	if err != nil {
		return nil, err
	}
	tc.InsecureSkipVerify = s.TLSInsecureSkipVerify //nolint:gosec // opt-in, for tests
	return tc, nil
}

// Apply sets s on a Sarama configuration, for a client of the brokers
// made outside this package (parley tap's).
func (s Security) Apply(sc *sarama.Config) error {
	tc, err := s.tlsConfig()
	if err != nil {
		return err
	}
	if tc != nil {
		sc.Net.TLS.Enable, sc.Net.TLS.Config = true, tc
	}
	if s.SASLMechanism == "" {
		return nil
	}
	sc.Net.SASL.Enable = true
	sc.Net.SASL.User, sc.Net.SASL.Password = s.SASLUser, s.SASLPassword
	switch s.SASLMechanism {
	case "PLAIN":
		sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case "SCRAM-SHA-256":
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.HashGeneratorFcn(sha256.New)} }
	case "SCRAM-SHA-512":
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.HashGeneratorFcn(sha512.New)} }
	}
	return nil
}

// kgoOpts are s as franz-go client options (the producer's), with dial,
// if set, opening the connections (TLS over them if enabled).
func (s Security) kgoOpts(dial func(ctx context.Context, network, addr string) (net.Conn, error)) ([]kgo.Opt, error) {
	tc, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	var opts []kgo.Opt
	switch {
	case dial != nil && tc != nil:
		opts = append(opts, kgo.Dialer(func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			cfg := tc.Clone()
			if cfg.ServerName == "" {
				cfg.ServerName, _, _ = net.SplitHostPort(addr)
			}
			tconn := tls.Client(conn, cfg)
			if err := tconn.HandshakeContext(ctx); err != nil {
				_ = conn.Close()
				return nil, err
			}
			return tconn, nil
		}))
	case dial != nil:
		opts = append(opts, kgo.Dialer(dial))
	case tc != nil:
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch s.SASLMechanism {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(kscram.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(kscram.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsSha512Mechanism()))
	}
	return opts, nil
}

// scramClient adapts xdg-go/scram to Sarama's SCRAMClient.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (c *scramClient) Begin(user, password, authzID string) error {
	cl, err := c.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	c.conv = cl.NewConversation()
	return nil
}

func (c *scramClient) Step(challenge string) (string, error) { return c.conv.Step(challenge) }
func (c *scramClient) Done() bool                            { return c.conv.Done() }
