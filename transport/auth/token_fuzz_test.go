package auth_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/auth"
)

// FuzzVerify: whatever a client puts in its hello's token, Verify answers
// without panicking, and accepts nothing it did not sign with valid
// claims. Seeds include well-signed tokens with altered payloads, so the
// engine explores the claim checks behind the signature, and unsigned
// ("alg":"none") tokens.
func FuzzVerify(f *testing.F) {
	tokens, err := auth.New(auth.Config{Secret: []byte("fuzz-secret-0123456789abcdef01234567")})
	if err != nil {
		f.Fatal(err)
	}
	good, err := tokens.Mint("alice", "phone", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(good, ".")
	enc := base64.RawURLEncoding.EncodeToString
	for _, s := range []string{
		good, "", ".", "..", "a.b.c", good + "x", parts[0] + "." + parts[1] + ".",
		enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + ".",
		parts[0] + "." + enc([]byte(`{"sub":"alice","dev":"phone","exp":"9999999999"}`)) + "." + parts[2],
		parts[0] + "." + enc([]byte(`{"sub":"alice","dev":"phone","exp":1e300}`)) + "." + parts[2],
		strings.Repeat("a", 4096),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		id, err := tokens.Verify(token)
		if err != nil {
			return
		}
		// Accepted: then it is a token this secret signed, naming a valid
		// account and device, not yet expired.
		if _, err := domain.ParseAccountID(string(id.Account)); err != nil {
			t.Fatalf("accepted a token with account %q: %v", id.Account, err)
		}
		if _, err := domain.ParseDeviceID(string(id.Device)); err != nil {
			t.Fatalf("accepted a token with device %q: %v", id.Device, err)
		}
		if !id.Expires.After(time.Now().Add(-10 * time.Second)) {
			t.Fatalf("accepted a token that expired at %v", id.Expires)
		}
	})
}
