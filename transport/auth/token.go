// Package auth mints and verifies the signed tokens that clients present in
// their hello: HS256 JWTs whose subject is the account and whose "dev" claim
// is the device.
package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/parley-chat/parley/domain"
)

// MinSecretBytes is the shortest signing secret accepted: HS256 with less
// than 256 bits of key is guessable.
const MinSecretBytes = 32

// Errors of Verify.
var (
	// ErrBadToken: malformed, wrongly signed, or with invalid claims.
	ErrBadToken = errors.New("bad token")
	// ErrTokenExpired: well signed but past its exp.
	ErrTokenExpired = errors.New("token expired")
)

// Identity is who a verified token speaks for.
type Identity struct {
	Account domain.AccountID
	Device  domain.DeviceID
	Expires time.Time
}

type claims struct {
	Device string `json:"dev"`
	jwt.RegisteredClaims
}

// Tokens signs and verifies tokens with one shared secret.
type Tokens struct {
	secret []byte
	parser *jwt.Parser
}

// NewTokens returns a signer/verifier for secret.
func NewTokens(secret []byte) (*Tokens, error) {
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("cannot use a token secret of %d bytes: need at least %d", len(secret), MinSecretBytes)
	}
	return &Tokens{
		secret: secret,
		parser: jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second)),
	}, nil
}

// Mint returns a token for account/device valid for ttl.
func (t *Tokens) Mint(account domain.AccountID, device domain.DeviceID, ttl time.Duration) (string, error) {
	if _, err := domain.ParseAccountID(string(account)); err != nil {
		return "", err
	}
	if _, err := domain.ParseDeviceID(string(device)); err != nil {
		return "", err
	}
	now := time.Now()
	c := claims{Device: string(device), RegisteredClaims: jwt.RegisteredClaims{
		Subject:   string(account),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.secret)
	if err != nil {
		return "", fmt.Errorf("cannot sign token: %w", err)
	}
	return s, nil
}

// Verify checks a token and returns its identity.
func (t *Tokens) Verify(token string) (Identity, error) {
	var c claims
	_, err := t.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.secret, nil })
	if errors.Is(err, jwt.ErrTokenExpired) {
		return Identity{}, ErrTokenExpired
	}
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	a, err := domain.ParseAccountID(c.Subject)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	d, err := domain.ParseDeviceID(c.Device)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	return Identity{Account: a, Device: d, Expires: c.ExpiresAt.Time}, nil
}
