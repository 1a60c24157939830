package auth

import (
	"crypto/sha256"
	"crypto/subtle"
)

// DefaultGatewaySecretHeader is the header in which a trusted API gateway
// sends its shared secret, to the socket's upgrade and to the HTTP API
// alike, unless configured otherwise.
const DefaultGatewaySecretHeader = "X-Parley-Gateway-Secret"

// SecretEqual reports whether got is the shared secret want, in time that
// depends on neither's content nor length: both sides are hashed with
// SHA-256 first, because subtle.ConstantTimeCompare returns at once when
// the lengths differ and so tells a prober the secret's length. An empty
// want never matches, so an unset secret cannot be met by an empty header.
//
// Every shared secret Parley checks (the service credential, the cluster
// link secret, the trusted gateway secret) goes through here.
func SecretEqual(got, want []byte) bool {
	if len(want) == 0 {
		return false
	}
	g, w := sha256.Sum256(got), sha256.Sum256(want)
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
