// Package tlsconfigtest makes certificates for tests of TLS clients: a CA
// of its own, a server certificate it signed for 127.0.0.1 and a client
// certificate it signed, for servers that ask for one.
package tlsconfigtest

import (
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
	"testing"
	"time"
)

// Certificates are a test CA and a server certificate it signed for
// 127.0.0.1, valid for an hour, written as PEM files in a temporary
// directory of the test.
type Certificates struct {
	// CAFile is the CA's certificate, for a client to trust.
	CAFile string
	// CertFile and KeyFile are the server's certificate and key.
	CertFile, KeyFile string
	// ClientCertFile and ClientKeyFile are a client's certificate and key.
	ClientCertFile, ClientKeyFile string
	// Server is a server configuration with that certificate.
	Server *tls.Config
	// ServerAskingClients is Server that also requires a client
	// certificate the CA signed.
	ServerAskingClients *tls.Config
}

// New makes Certificates for t.
func New(t testing.TB) Certificates {
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
	signed := func(serial int64, tmpl *x509.Certificate) (*ecdsa.PrivateKey, []byte, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(serial), now.Add(-time.Hour), now.Add(time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return key, der, keyDER
	}
	key, der, keyDER := signed(2, &x509.Certificate{Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	_, clientDER, clientKeyDER := signed(3, &x509.Certificate{Subject: pkix.Name{CommonName: "parley"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	dir := t.TempDir()
	server := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	asking := server.Clone()
	asking.ClientAuth, asking.ClientCAs = tls.RequireAndVerifyClientCert, x509.NewCertPool()
	asking.ClientCAs.AddCert(ca)
	c := Certificates{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server.key"),
		ClientCertFile: filepath.Join(dir, "client.pem"), ClientKeyFile: filepath.Join(dir, "client.key"),
		Server: server, ServerAskingClients: asking}
	for file, block := range map[string]*pem.Block{
		c.CAFile:         {Type: "CERTIFICATE", Bytes: caDER},
		c.CertFile:       {Type: "CERTIFICATE", Bytes: der},
		c.KeyFile:        {Type: "EC PRIVATE KEY", Bytes: keyDER},
		c.ClientCertFile: {Type: "CERTIFICATE", Bytes: clientDER},
		c.ClientKeyFile:  {Type: "EC PRIVATE KEY", Bytes: clientKeyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return c
}
