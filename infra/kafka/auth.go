package kafka

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// Security configures how Parley authenticates to external brokers.
type Security struct {
	// TLS enables TLS to the brokers.
	TLS bool
	// TLSCAFile is a PEM bundle of CAs to trust; empty uses the system pool.
	TLSCAFile string
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
	return errors.Join(errs...)
}

// apply sets s on a Sarama configuration.
func (s Security) apply(sc *sarama.Config) error {
	if s.TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: s.TLSInsecureSkipVerify} //nolint:gosec // opt-in, for tests
		if s.TLSCAFile != "" {
			pem, err := os.ReadFile(s.TLSCAFile)
			if err != nil {
				return fmt.Errorf("cannot read the Kafka CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("no certificate in %s", s.TLSCAFile)
			}
			tc.RootCAs = pool
		}
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
