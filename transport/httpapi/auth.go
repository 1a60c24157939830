package httpapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/wire"
)

// servicePrefix marks a bearer credential as the service secret rather than
// a user token. A JWT never starts with it (its first segment is base64url).
const servicePrefix = "svc:"

// caller is who a request speaks for.
type caller struct {
	// service is true for a holder of the service credential, who may act
	// as any account and names it in each request.
	service bool
	// account and device are a user's, from the token; zero for a service.
	account domain.AccountID
	device  domain.DeviceID
}

// authenticate reads "Authorization: Bearer <credential>".
func (s *server) authenticate(r *http.Request) (caller, error) {
	hs := r.Header.Values("Authorization")
	if len(hs) > 1 {
		// Which one a proxy added, and which the client sent, cannot be
		// told apart: neither is taken.
		return caller{}, unauthorized("more than one Authorization header")
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return caller{}, unauthorized("missing Authorization: Bearer credential")
	}
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return caller{}, unauthorized("the Authorization scheme must be Bearer")
	}
	cred = strings.TrimSpace(cred)
	if cred == "" {
		return caller{}, unauthorized("empty bearer credential")
	}
	if secret, ok := strings.CutPrefix(cred, servicePrefix); ok {
		if !s.isServiceCredential(secret) {
			return caller{}, unauthorized("bad service credential")
		}
		return caller{service: true}, nil
	}
	id, err := s.cfg.Tokens.Verify(cred)
	if errors.Is(err, auth.ErrTokenExpired) {
		return caller{}, &apiError{Status: http.StatusUnauthorized, Code: wire.CodeTokenExpired, Message: "token expired"}
	}
	if err != nil {
		return caller{}, unauthorized(err.Error())
	}
	return caller{account: id.Account, device: id.Device}, nil
}

// isServiceCredential compares in constant time, hiding the secret's
// length too. With no credential configured nothing matches: service calls
// are disabled.
func (s *server) isServiceCredential(secret string) bool {
	return auth.SecretEqual([]byte(secret), []byte(s.cfg.ServiceCredential))
}

func unauthorized(msg string) *apiError {
	return &apiError{Status: http.StatusUnauthorized, Code: wire.CodeUnauthorized, Message: msg}
}

// errActsAsOther refuses a user request whose "as" names another account
// (authenticated checks it for every endpoint).
var errActsAsOther = &apiError{Status: http.StatusForbidden, Code: wire.CodeForbidden, Message: "a user token acts only as its own account"}

// actingAs is the account a read or a group change is for. A user acts as
// itself (an "as" naming someone else was refused already). A service
// must name the account in the "as" query parameter.
func actingAs(r *http.Request, c caller) (domain.AccountID, error) {
	as := r.URL.Query().Get("as")
	if !c.service {
		return c.account, nil
	}
	if as == "" {
		return "", invalid("a service call needs the as query parameter: the account to act as")
	}
	a, err := domain.ParseAccountID(as)
	if err != nil {
		return "", err
	}
	return a, nil
}
