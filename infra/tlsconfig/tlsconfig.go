// Package tlsconfig builds the TLS configuration Parley uses as a client of
// the services it connects to (Kafka brokers, Redis): TLS 1.2 or newer,
// the server's certificate checked against the system's CAs or those of
// one PEM file, and a client certificate of its own for servers that ask
// for one.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Files are the PEM files of a client's TLS configuration.
type Files struct {
	// CA holds the CAs to trust; empty trusts the system's.
	CA string
	// Cert and Key are the client's own certificate (its chain) and
	// private key, presented to a server that asks for one (mutual TLS);
	// both or neither.
	Cert, Key string
}

// Client returns a client configuration that trusts the CAs of f.CA, or
// the system's when it is empty, and presents f's certificate when set.
// service names the server in errors ("Kafka", "Redis").
func Client(service string, f Files) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if (f.Cert == "") != (f.Key == "") {
		return nil, fmt.Errorf("a %s client certificate needs both its certificate and its key file", service)
	}
	if f.Cert != "" {
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("cannot load the %s client certificate: %w", service, err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	if f.CA == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("cannot read the %s CA file: %w", service, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in the %s CA file %s", service, f.CA)
	}
	tc.RootCAs = pool
	return tc, nil
}
