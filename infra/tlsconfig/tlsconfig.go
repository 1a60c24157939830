// Package tlsconfig builds the TLS configuration Parley uses as a client of
// the services it connects to (Kafka brokers, Redis): TLS 1.2 or newer,
// the server's certificate checked against the system's CAs or those of
// one PEM file.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Client returns a client configuration that trusts the CAs in the PEM
// file caFile, or the system's when caFile is empty. service names the
// server in errors ("Kafka", "Redis").
func Client(service, caFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read the %s CA file: %w", service, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in the %s CA file %s", service, caFile)
	}
	tc.RootCAs = pool
	return tc, nil
}
