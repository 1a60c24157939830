// Package auth mints and verifies the signed tokens that clients present in
// their hello: HS256 JWTs whose subject is the account and whose "dev" claim
// is the device. It also holds the one constant-time comparison of shared
// secrets (SecretEqual).
package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/parley-chat/parley/domain"
)

// MinSecretBytes is the shortest signing secret accepted: HS256 with less
// than 256 bits of key is guessable.
const MinSecretBytes = 32

// DefaultMaxLifetime is the longest a token may be valid for unless
// Config.MaxLifetime says otherwise: long enough for a mobile client that
// signs in once a month, short enough that a leaked token dies.
const DefaultMaxLifetime = 30 * 24 * time.Hour

// Leeway is the clock skew allowed between the token's issuer and the
// server, on exp, nbf and iat.
const Leeway = 5 * time.Second

// maxNumericDate is 9999-12-31T23:59:59Z: a date claim beyond it is not a
// date but an attempt to overflow time arithmetic.
const maxNumericDate = 253402300799

// Errors of Verify.
var (
	// ErrBadToken: malformed, wrongly signed, or with invalid claims.
	ErrBadToken = errors.New("bad token")
	// ErrTokenExpired: well signed, with valid claims, but past its exp.
	ErrTokenExpired = errors.New("token expired")
)

// Identity is who a verified token speaks for.
type Identity struct {
	Account domain.AccountID
	Device  domain.DeviceID
	Expires time.Time
}

// Config configures the signer and verifier of tokens.
type Config struct {
	// Secret is the HS256 key, at least MinSecretBytes long. Required.
	Secret []byte
	// Issuer, when set, must be the token's "iss"; Mint writes it. Empty
	// accepts any issuer and mints none.
	Issuer string
	// Audience, when set, must be among the token's "aud"; Mint writes it.
	// Empty mints none and refuses every token that names an audience: a
	// token meant for some other audience is not meant for this server
	// (RFC 7519, 4.1.3).
	Audience string
	// MaxLifetime bounds how long a token may be valid: exp - iat, or exp -
	// now for a token without iat. Default DefaultMaxLifetime.
	MaxLifetime time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.MaxLifetime == 0 {
		c.MaxLifetime = DefaultMaxLifetime
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Secret) < MinSecretBytes {
		errs = append(errs, fmt.Errorf("cannot use a token secret of %d bytes: need at least %d", len(c.Secret), MinSecretBytes))
	}
	if c.MaxLifetime < 0 {
		errs = append(errs, fmt.Errorf("a token's maximum lifetime cannot be negative, got %s", c.MaxLifetime))
	}
	return errors.Join(errs...)
}

// claims are the token's claims. Their JSON is decoded strictly: see
// UnmarshalJSON.
type claims struct {
	Device string `json:"dev"`
	jwt.RegisteredClaims
}

// UnmarshalJSON refuses a date claim (exp, iat, nbf) that is not a JSON
// number: RFC 7519 defines NumericDate as a number, but jwt.NumericDate
// also takes a string holding one ("exp": "9999999999"), which the signer
// of a real token never writes. It also refuses dates before 1970 or after
// the year 9999.
func (c *claims) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	for _, name := range []string{"exp", "iat", "nbf"} {
		if v, ok := raw[name]; ok {
			if err := checkNumericDate(v); err != nil {
				return fmt.Errorf("claim %s: %w", name, err)
			}
		}
	}
	type plain claims // without this method, so that it doesn't recurse
	return json.Unmarshal(b, (*plain)(c))
}

func checkNumericDate(v json.RawMessage) error {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return fmt.Errorf("%.20s is not a number", v)
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return fmt.Errorf("%.20s is not a date between 1970 and 9999", v)
	}
	return nil
}

// Tokens signs and verifies tokens with one shared secret.
type Tokens struct {
	cfg    Config
	parser *jwt.Parser
}

// New validates cfg and returns a signer/verifier.
func New(cfg Config) (*Tokens, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The parser checks the encoding, the algorithm and the signature;
	// Verify checks the claims itself, so that a token with bad claims is
	// always ErrBadToken, never merely expired.
	return &Tokens{cfg: cfg, parser: jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithoutClaimsValidation())}, nil
}

// NewTokens returns a signer/verifier for secret with the default checks:
// no issuer or audience, DefaultMaxLifetime.
func NewTokens(secret []byte) (*Tokens, error) {
	return New(Config{Secret: secret})
}

// MaxLifetime is the longest a token minted or accepted here may live.
func (t *Tokens) MaxLifetime() time.Duration { return t.cfg.MaxLifetime }

// Mint returns a token for account/device valid for ttl, with the
// configured issuer and audience. A ttl over the maximum lifetime is
// refused: the token would be refused too.
func (t *Tokens) Mint(account domain.AccountID, device domain.DeviceID, ttl time.Duration) (string, error) {
	if _, err := domain.ParseAccountID(string(account)); err != nil {
		return "", err
	}
	if _, err := domain.ParseDeviceID(string(device)); err != nil {
		return "", err
	}
	if ttl > t.cfg.MaxLifetime {
		return "", fmt.Errorf("cannot mint a token valid for %s: the maximum lifetime is %s", ttl, t.cfg.MaxLifetime)
	}
	now := t.cfg.Now()
	c := claims{Device: string(device), RegisteredClaims: jwt.RegisteredClaims{
		Subject:   string(account),
		Issuer:    t.cfg.Issuer,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	if t.cfg.Audience != "" {
		c.Audience = jwt.ClaimStrings{t.cfg.Audience}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.cfg.Secret)
	if err != nil {
		return "", fmt.Errorf("cannot sign token: %w", err)
	}
	return s, nil
}

// Verify checks a token and returns its identity: ErrTokenExpired only
// for a token that is well signed, has valid claims and is past its exp;
// ErrBadToken for anything else wrong.
func (t *Tokens) Verify(token string) (Identity, error) {
	var c claims
	if _, err := t.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.cfg.Secret, nil }); err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if err := t.checkClaims(&c); err != nil {
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
	if !t.cfg.Now().Before(c.ExpiresAt.Add(Leeway)) {
		return Identity{}, ErrTokenExpired
	}
	return Identity{Account: a, Device: d, Expires: c.ExpiresAt.Time}, nil
}

// checkClaims checks every claim but the expiry itself.
func (t *Tokens) checkClaims(c *claims) error {
	now := t.cfg.Now()
	if c.ExpiresAt == nil {
		return errors.New("the token has no exp")
	}
	if c.IssuedAt != nil && c.IssuedAt.After(now.Add(Leeway)) {
		return errors.New("the token is issued in the future (iat)")
	}
	if c.NotBefore != nil && c.NotBefore.After(now.Add(Leeway)) {
		return errors.New("the token is not valid yet (nbf)")
	}
	if t.cfg.Issuer != "" && c.Issuer != t.cfg.Issuer {
		return fmt.Errorf("the token's issuer is %q, want %q", c.Issuer, t.cfg.Issuer)
	}
	switch {
	case t.cfg.Audience == "" && len(c.Audience) > 0:
		return fmt.Errorf("the token is for audience %q, and this server has none", []string(c.Audience))
	case t.cfg.Audience != "" && !slices.Contains(c.Audience, t.cfg.Audience):
		return fmt.Errorf("the token's audience %q does not include %q", []string(c.Audience), t.cfg.Audience)
	}
	// Without iat, count from now; allow the clock skew, since a token
	// minted with the maximum lifetime by a clock a little ahead would
	// otherwise be refused.
	start, allowed := now, t.cfg.MaxLifetime+Leeway
	if c.IssuedAt != nil {
		start, allowed = c.IssuedAt.Time, t.cfg.MaxLifetime
	}
	if c.ExpiresAt.Sub(start) > allowed {
		return fmt.Errorf("the token is valid for longer than %s", t.cfg.MaxLifetime)
	}
	return nil
}
