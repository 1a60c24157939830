package auth_test

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/auth"
)

var (
	secret      = []byte("0123456789abcdef0123456789abcdef") // 32 bytes
	otherSecret = []byte("fedcba9876543210fedcba9876543210")
)

func newTokens(t *testing.T, s []byte) *auth.Tokens {
	t.Helper()
	tk, err := auth.NewTokens(s)
	if err != nil {
		t.Fatalf("NewTokens: %v", err)
	}
	return tk
}

func TestNewTokensSecretLength(t *testing.T) {
	tests := []struct {
		name    string
		secret  []byte
		wantErr bool
	}{
		{"nil", nil, true},
		{"empty", []byte{}, true},
		{"one byte short", secret[:auth.MinSecretBytes-1], true},
		{"exactly the minimum", secret[:auth.MinSecretBytes], false},
		{"longer", append(append([]byte{}, secret...), secret...), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk, err := auth.NewTokens(tt.secret)
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewTokens(%d bytes) err = %v, wantErr %v", len(tt.secret), err, tt.wantErr)
			}
			if tt.wantErr && tk != nil {
				t.Errorf("NewTokens returned a verifier with an error")
			}
		})
	}
}

func TestMintVerifyRoundTrip(t *testing.T) {
	tk := newTokens(t, secret)
	tests := []struct {
		name    string
		account domain.AccountID
		device  domain.DeviceID
		ttl     time.Duration
	}{
		{"plain", "alice", "phone", time.Hour},
		{"every id char", "a.b_c-d@e", "Dev-9", time.Minute},
		{"max-length ids", domain.AccountID(strings.Repeat("a", domain.MaxIDLen)), domain.DeviceID(strings.Repeat("d", domain.MaxIDLen)), 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now()
			tok, err := tk.Mint(tt.account, tt.device, tt.ttl)
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			id, err := tk.Verify(tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.Account != tt.account || id.Device != tt.device {
				t.Errorf("Verify = %q/%q, want %q/%q", id.Account, id.Device, tt.account, tt.device)
			}
			// exp has second precision.
			lo, hi := before.Add(tt.ttl).Add(-time.Second), time.Now().Add(tt.ttl).Add(time.Second)
			if id.Expires.Before(lo) || id.Expires.After(hi) {
				t.Errorf("Expires = %v, want within [%v, %v]", id.Expires, lo, hi)
			}
			// Another verifier with the same secret accepts it too.
			if _, err := newTokens(t, secret).Verify(tok); err != nil {
				t.Errorf("Verify with a second verifier on the same secret: %v", err)
			}
		})
	}
}

func TestMintRejectsInvalidIDs(t *testing.T) {
	tk := newTokens(t, secret)
	tests := []struct {
		name    string
		account domain.AccountID
		device  domain.DeviceID
		field   string
	}{
		{"empty account", "", "phone", "account"},
		{"account with slash", "a/b", "phone", "account"},
		{"empty device", "alice", "", "device"},
		{"device with colon", "alice", "p:1", "device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := tk.Mint(tt.account, tt.device, time.Hour)
			var inv *domain.InvalidError
			if !errors.As(err, &inv) || inv.Field != tt.field {
				t.Fatalf("Mint = %q, %v; want *InvalidError on %q", tok, err, tt.field)
			}
			if tok != "" {
				t.Errorf("Mint returned a token with an error")
			}
		})
	}
}

// sign signs arbitrary claims, for tokens Mint would never produce.
func sign(t *testing.T, method jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

type testClaims struct {
	Device string `json:"dev,omitempty"`
	jwt.RegisteredClaims
}

func TestVerifyRejects(t *testing.T) {
	tk := newTokens(t, secret)
	now := time.Now()
	valid := func(sub, dev string, exp time.Time) testClaims {
		return testClaims{Device: dev, RegisteredClaims: jwt.RegisteredClaims{Subject: sub, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp)}}
	}
	expiredMinted, err := tk.Mint("alice", "phone", -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	goodMinted, err := tk.Mint("alice", "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherMinted, err := newTokens(t, otherSecret).Mint("alice", "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	noneToken := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid("alice", "phone", now.Add(time.Hour)))
	parts := strings.Split(goodMinted, ".")

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"expired", expiredMinted, auth.ErrTokenExpired},
		{"expired long ago", sign(t, jwt.SigningMethodHS256, secret, valid("alice", "phone", now.Add(-48*time.Hour))), auth.ErrTokenExpired},
		{"wrong secret", otherMinted, auth.ErrBadToken},
		// The signature is checked before the claims: a forged token is bad,
		// never merely "expired".
		{"wrong secret and expired", sign(t, jwt.SigningMethodHS256, otherSecret, valid("alice", "phone", now.Add(-time.Hour))), auth.ErrBadToken},
		{"alg none", noneToken, auth.ErrBadToken},
		{"alg none, signature stripped from a good token", parts[0] + "." + parts[1] + ".", auth.ErrBadToken},
		{"HS512 with the right secret", sign(t, jwt.SigningMethodHS512, secret, valid("alice", "phone", now.Add(time.Hour))), auth.ErrBadToken},
		{"tampered payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory","dev":"phone","exp":9999999999}`)) + "." + parts[2], auth.ErrBadToken},
		{"tampered signature", parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])), auth.ErrBadToken},
		{"empty", "", auth.ErrBadToken},
		{"garbage", "not a token", auth.ErrBadToken},
		{"two segments", "a.b", auth.ErrBadToken},
		{"four segments", goodMinted + ".x", auth.ErrBadToken},
		{"bad base64", "!!!.???.###", auth.ErrBadToken},
		{"no exp", sign(t, jwt.SigningMethodHS256, secret, testClaims{Device: "phone", RegisteredClaims: jwt.RegisteredClaims{Subject: "alice"}}), auth.ErrBadToken},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, secret, testClaims{Device: "phone", RegisteredClaims: jwt.RegisteredClaims{
			Subject: "alice", ExpiresAt: jwt.NewNumericDate(now.Add(2 * time.Hour)), NotBefore: jwt.NewNumericDate(now.Add(time.Hour))}}), auth.ErrBadToken},
		{"no subject", sign(t, jwt.SigningMethodHS256, secret, valid("", "phone", now.Add(time.Hour))), auth.ErrBadToken},
		{"subject not an account id", sign(t, jwt.SigningMethodHS256, secret, valid("alice:bob", "phone", now.Add(time.Hour))), auth.ErrBadToken},
		{"no device", sign(t, jwt.SigningMethodHS256, secret, valid("alice", "", now.Add(time.Hour))), auth.ErrBadToken},
		{"device not a device id", sign(t, jwt.SigningMethodHS256, secret, valid("alice", "ph/one", now.Add(time.Hour))), auth.ErrBadToken},

		// Lifetimes and dates.
		{"valid for 100 years", sign(t, jwt.SigningMethodHS256, secret, valid("alice", "phone", now.AddDate(100, 0, 0))), auth.ErrBadToken},
		{"valid for 100 years, no iat", sign(t, jwt.SigningMethodHS256, secret, testClaims{Device: "phone", RegisteredClaims: jwt.RegisteredClaims{
			Subject: "alice", ExpiresAt: jwt.NewNumericDate(now.AddDate(100, 0, 0))}}), auth.ErrBadToken},
		{"one second over the maximum lifetime", sign(t, jwt.SigningMethodHS256, secret, testClaims{Device: "phone", RegisteredClaims: jwt.RegisteredClaims{
			Subject: "alice", IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(auth.DefaultMaxLifetime + time.Second))}}), auth.ErrBadToken},
		{"issued long ago, expiring soon", sign(t, jwt.SigningMethodHS256, secret, testClaims{Device: "phone", RegisteredClaims: jwt.RegisteredClaims{
			Subject: "alice", IssuedAt: jwt.NewNumericDate(now.AddDate(0, 0, -40)), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}}), auth.ErrBadToken},
		{"issued in the future", sign(t, jwt.SigningMethodHS256, secret, testClaims{Device: "phone", RegisteredClaims: jwt.RegisteredClaims{
			Subject: "alice", IssuedAt: jwt.NewNumericDate(now.Add(time.Minute)), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}}), auth.ErrBadToken},
		{"issued in the future and expired", sign(t, jwt.SigningMethodHS256, secret, testClaims{Device: "phone", RegisteredClaims: jwt.RegisteredClaims{
			Subject: "alice", IssuedAt: jwt.NewNumericDate(now.Add(time.Minute)), ExpiresAt: jwt.NewNumericDate(now.Add(-time.Minute))}}), auth.ErrBadToken},
		{"exp as a string", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "dev": "phone", "exp": strconv.FormatInt(now.Add(time.Hour).Unix(), 10)}), auth.ErrBadToken},
		{"expired exp as a string", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "dev": "phone", "exp": strconv.FormatInt(now.Add(-time.Hour).Unix(), 10)}), auth.ErrBadToken},
		{"iat as a string", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "dev": "phone", "iat": strconv.FormatInt(now.Unix(), 10), "exp": now.Add(time.Hour).Unix()}), auth.ErrBadToken},
		{"nbf as a string", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "dev": "phone", "nbf": strconv.FormatInt(now.Unix(), 10), "exp": now.Add(time.Hour).Unix()}), auth.ErrBadToken},
		{"exp null", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "dev": "phone", "exp": nil}), auth.ErrBadToken},
		{"exp a boolean", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "dev": "phone", "exp": true}), auth.ErrBadToken},
		{"exp past the year 9999", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "dev": "phone", "exp": 1e300}), auth.ErrBadToken},
		{"exp before 1970", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "dev": "phone", "exp": -1}), auth.ErrBadToken},

		// Issuer and audience, with a verifier that sets neither.
		{"an audience this server doesn't have", sign(t, jwt.SigningMethodHS256, secret, testClaims{Device: "phone", RegisteredClaims: jwt.RegisteredClaims{
			Subject: "alice", Audience: jwt.ClaimStrings{"billing"}, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}}), auth.ErrBadToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := tk.Verify(tt.token)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %+v, %v; want %v", id, err, tt.want)
			}
			other := auth.ErrBadToken
			if tt.want == auth.ErrBadToken {
				other = auth.ErrTokenExpired
			}
			if errors.Is(err, other) {
				t.Errorf("Verify error %v matches both ErrBadToken and ErrTokenExpired", err)
			}
			if id != (auth.Identity{}) {
				t.Errorf("Verify returned identity %+v with an error", id)
			}
		})
	}
	// The good token used above is still good: the table tests reject for
	// the reason they name, not because of a broken fixture.
	if _, err := tk.Verify(goodMinted); err != nil {
		t.Fatalf("the good token fails: %v", err)
	}
}

// The parser allows a few seconds of clock skew between issuer and verifier.
func TestVerifyLeeway(t *testing.T) {
	tk := newTokens(t, secret)
	tok := sign(t, jwt.SigningMethodHS256, secret, testClaims{Device: "phone", RegisteredClaims: jwt.RegisteredClaims{
		Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(-2 * time.Second))}})
	if _, err := tk.Verify(tok); err != nil {
		t.Errorf("a token 2s past exp is refused despite the 5s leeway: %v", err)
	}
}

// An iat a little ahead of the server's clock is skew, not forgery.
func TestVerifyLeewayOnIssuedAt(t *testing.T) {
	tk := newTokens(t, secret)
	now := time.Now()
	tok := sign(t, jwt.SigningMethodHS256, secret, testClaims{Device: "phone", RegisteredClaims: jwt.RegisteredClaims{
		Subject: "alice", IssuedAt: jwt.NewNumericDate(now.Add(3 * time.Second)), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}})
	if _, err := tk.Verify(tok); err != nil {
		t.Errorf("a token issued 3s ahead is refused despite the 5s leeway: %v", err)
	}
}

// With an issuer and an audience configured, tokens must carry both, and
// Mint writes them.
func TestVerifyIssuerAndAudience(t *testing.T) {
	tk, err := auth.New(auth.Config{Secret: secret, Issuer: "https://users.example", Audience: "parley"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := func(iss string, aud ...string) testClaims {
		return testClaims{Device: "phone", RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", Issuer: iss, Audience: aud,
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}}
	}
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"both right", sign(t, jwt.SigningMethodHS256, secret, claims("https://users.example", "parley")), nil},
		{"one of several audiences", sign(t, jwt.SigningMethodHS256, secret, claims("https://users.example", "billing", "parley")), nil},
		{"no issuer", sign(t, jwt.SigningMethodHS256, secret, claims("", "parley")), auth.ErrBadToken},
		{"foreign issuer", sign(t, jwt.SigningMethodHS256, secret, claims("https://evil.example", "parley")), auth.ErrBadToken},
		{"no audience", sign(t, jwt.SigningMethodHS256, secret, claims("https://users.example")), auth.ErrBadToken},
		{"foreign audience", sign(t, jwt.SigningMethodHS256, secret, claims("https://users.example", "billing")), auth.ErrBadToken},
		{"minted without them", mustMint(t, newTokens(t, secret), time.Hour), auth.ErrBadToken},
		{"minted with them", mustMint(t, tk, time.Hour), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tk.Verify(tt.token)
			if (tt.want == nil && err != nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("Verify: %v, want %v", err, tt.want)
			}
		})
	}
}

func mustMint(t *testing.T, tk *auth.Tokens, ttl time.Duration) string {
	t.Helper()
	tok, err := tk.Mint("alice", "phone", ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// The maximum lifetime bounds what Mint issues as well as what Verify
// accepts.
func TestMaxLifetime(t *testing.T) {
	tk, err := auth.New(auth.Config{Secret: secret, MaxLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Mint("alice", "phone", time.Hour+time.Second); err == nil {
		t.Error("Mint made a token valid for longer than the maximum lifetime")
	}
	if _, err := tk.Verify(mustMint(t, tk, time.Hour)); err != nil {
		t.Errorf("a token of exactly the maximum lifetime: %v", err)
	}
	if _, err := tk.Verify(mustMint(t, newTokens(t, secret), 2*time.Hour)); !errors.Is(err, auth.ErrBadToken) {
		t.Errorf("a 2h token against a 1h maximum: %v, want ErrBadToken", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     auth.Config
		wantErr []string
	}{
		{"complete", auth.Config{Secret: secret, Issuer: "i", Audience: "a", MaxLifetime: time.Hour}, nil},
		{"defaults", auth.Config{Secret: secret}, nil},
		{"short secret", auth.Config{Secret: secret[:10]}, []string{"need at least 32"}},
		{"negative lifetime and short secret", auth.Config{Secret: nil, MaxLifetime: -time.Second}, []string{"need at least 32", "cannot be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := auth.New(tt.cfg)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("New: %v, want an error with %q", err, w)
				}
			}
		})
	}
}
