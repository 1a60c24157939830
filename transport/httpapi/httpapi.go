// Package httpapi is Parley's HTTP API: the operations of the WebSocket
// protocol (send, sync, the conversation list, groups) as JSON over plain
// HTTP, for clients that hold no socket and for neighbouring services that
// act on behalf of an account (system notices, bots, support tools), plus
// the online devices of an account. It calls the same api.Service as the
// gateway and answers with the same error codes and wire types, so a
// message sent here is the same event, with the same msgid rules, as one
// sent on a socket. docs/http-api.md is the reference.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/ratelimit"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/wire"
)

// Prefix is the path under which every endpoint lives.
const Prefix = "/api/v1"

// MinServiceCredentialBytes is the shortest service credential accepted:
// it is a bearer secret, so it must not be guessable.
const MinServiceCredentialBytes = 16

// Config configures the HTTP API.
type Config struct {
	// Service runs the operations. Required.
	Service *api.Service
	// Tokens verifies user bearer tokens: the same HS256 tokens that
	// clients present in their WebSocket hello. Required.
	Tokens *auth.Tokens
	// ServiceCredential is the shared secret of service calls, sent as
	// "Authorization: Bearer svc:<secret>". A service may act as any
	// account. Empty disables service calls; otherwise at least
	// MinServiceCredentialBytes long.
	ServiceCredential string
	// Online lists the devices of an account that are connected now. Nil
	// answers the online endpoint with 501. An error that wraps
	// api.ErrUnavailable answers 503, any other 500.
	Online func(ctx context.Context, account domain.AccountID) ([]domain.DeviceID, error)
	// Presence reads accounts' presence (the route table), added to the
	// online reply. Nil leaves it out.
	Presence func(ctx context.Context, accounts []domain.AccountID) ([]domain.Presence, error)
	// Logger receives internal errors and recovered panics. Default
	// slog.Default().
	Logger *slog.Logger
	// MaxBodyBytes bounds a request body; a larger one is answered 413
	// too_large. Default wire.MaxFrameBytes, the socket's frame limit.
	MaxBodyBytes int64
	// RateLimit bounds the requests per account and per client address.
	RateLimit RateLimit
	// TrustedGateway, when its Secret is set, names the API gateway whose
	// requests carry Secret in Header: they come from one address for
	// every client behind it, so they are not limited per address (the
	// socket's trusted gateway mode counts its connections the same way).
	TrustedGateway TrustedGateway
	// SyncPageBytes bounds the encoded messages of one sync page: a page
	// holds fewer than the limit asked for (with hasMore) rather than more
	// bytes, but always at least one message. Default DefaultSyncPageBytes.
	SyncPageBytes int
	// Backup, when set, writes a backup of the node to w (GET /backup, a
	// service's request). Nil answers 501: the node keeps no state of its
	// own.
	Backup func(ctx context.Context, w io.Writer) error
}

// TrustedGateway is an API gateway that proves itself with a shared
// secret in a header.
type TrustedGateway struct {
	Secret string
	// Header carries the secret. Default auth.DefaultGatewaySecretHeader,
	// as on the socket.
	Header string
}

// DefaultSyncPageBytes is the default byte budget of a sync page: 1 MiB,
// ten of the largest messages (16 KiB that JSON escapes to 96 KiB).
const DefaultSyncPageBytes = 1 << 20

func (c *Config) setDefaults() {
	c.RateLimit.setDefaults()
	if c.TrustedGateway.Header == "" {
		c.TrustedGateway.Header = auth.DefaultGatewaySecretHeader
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = wire.MaxFrameBytes
	}
	if c.SyncPageBytes == 0 {
		c.SyncPageBytes = DefaultSyncPageBytes
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Service == nil {
		errs = append(errs, errors.New("an http api needs a service"))
	}
	if c.Tokens == nil {
		errs = append(errs, errors.New("an http api needs a token verifier"))
	}
	if c.ServiceCredential != "" {
		if len(c.ServiceCredential) < MinServiceCredentialBytes {
			errs = append(errs, fmt.Errorf("a service credential needs at least %d bytes, got %d", MinServiceCredentialBytes, len(c.ServiceCredential)))
		}
		if strings.TrimSpace(c.ServiceCredential) != c.ServiceCredential || strings.ContainsAny(c.ServiceCredential, " \t\r\n") {
			errs = append(errs, errors.New("a service credential cannot contain white space"))
		}
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("max body bytes cannot be negative, got %d", c.MaxBodyBytes))
	}
	if c.SyncPageBytes < 0 {
		errs = append(errs, fmt.Errorf("sync page bytes cannot be negative, got %d", c.SyncPageBytes))
	}
	errs = append(errs, c.RateLimit.validate()...)
	return errors.Join(errs...)
}

// server holds the configured API; its methods are the endpoints.
type server struct {
	cfg Config
	svc *api.Service
	log *slog.Logger
	// byAccount and byAddress are the rate limits' buckets; nil when that
	// limit is off.
	byAccount, byAddress *ratelimit.Keyed
	// inFlight counts each address's requests under way; nil when that
	// limit is off.
	inFlight *inFlight
	// backingUp is held while a backup streams: one at a time.
	backingUp sync.Mutex
}

// New validates cfg and returns the API's handler. Every route is under
// Prefix; mount the handler at "/api/" (or "/") of the node's mux.
func New(cfg Config) (http.Handler, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cannot build http api: %w", err)
	}
	rl := cfg.RateLimit
	s := &server{cfg: cfg, svc: cfg.Service, log: cfg.Logger,
		byAccount: ratelimit.New(rl.PerAccount, rl.AccountBurst, rl.MaxKeys),
		byAddress: ratelimit.New(rl.PerIP, rl.IPBurst, rl.MaxKeys),
		inFlight:  newInFlight(rl.InFlightPerIP)}
	return s.routes(), nil
}

// endpoint is an authenticated handler; a returned error becomes the
// JSON error reply.
type endpoint func(w http.ResponseWriter, r *http.Request, c caller) error

type route struct {
	method, path string
	h            endpoint
}

func (s *server) routes() http.Handler {
	rs := []route{
		{http.MethodPost, "/messages", s.send},
		{http.MethodGet, "/conversations", s.conversations},
		{http.MethodGet, "/conversations/{conversation}/messages", s.sync},
		{http.MethodPost, "/conversations/{conversation}/read", s.read},
		{http.MethodGet, "/conversations/{conversation}/readers", s.readers},
		{http.MethodPut, "/conversations/{conversation}/mute", s.mute},
		{http.MethodDelete, "/conversations/{conversation}/mute", s.unmute},
		{http.MethodPatch, "/conversations/{conversation}/messages/{msgId}", s.edit},
		{http.MethodDelete, "/conversations/{conversation}/messages/{msgId}", s.deleteMessage},
		{http.MethodGet, "/groups", s.groups},
		{http.MethodPost, "/groups", s.createGroup},
		{http.MethodGet, "/groups/{group}", s.group},
		{http.MethodPost, "/groups/{group}/members", s.addMembers},
		{http.MethodDelete, "/groups/{group}/members", s.removeMembers},
		// For clients and proxies that drop the body of a DELETE.
		{http.MethodPost, "/groups/{group}/members:remove", s.removeMembers},
		{http.MethodGet, "/accounts/{account}/online", s.online},
		{http.MethodPost, "/accounts/{account}/erase", s.erase},
		{http.MethodGet, "/backup", s.backup},
	}
	mux := http.NewServeMux()
	allowed := map[string][]string{}
	for _, rt := range rs {
		mux.Handle(rt.method+" "+Prefix+rt.path, s.authenticated(rt.h))
		allowed[rt.path] = append(allowed[rt.path], rt.method)
	}
	// A pattern without a method is less specific than the ones with, so
	// it catches only the other methods: answer those 405 in JSON too.
	for path, methods := range allowed {
		// HEAD is answered as GET, but for a backup, which streams.
		if slices.Contains(methods, http.MethodGet) && path != "/backup" {
			methods = append(methods, http.MethodHead)
		}
		allow := strings.Join(methods, ", ")
		mux.HandleFunc(Prefix+path, func(w http.ResponseWriter, r *http.Request) {
			// Authentication comes first here too: who may not call the
			// API learns nothing of its methods.
			if _, err := s.authenticate(r); err != nil {
				s.fail(w, r, err)
				return
			}
			w.Header().Set("Allow", allow)
			writeError(w, &apiError{Status: http.StatusMethodNotAllowed, Code: wire.CodeInvalidArgument,
				Message: fmt.Sprintf("method %s is not allowed here; use %s", r.Method, allow)})
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{Status: http.StatusNotFound, Code: wire.CodeNotFound, Message: "no such endpoint"})
	})
	return s.recoverer(s.limitAddress(mux))
}

// authenticated resolves the caller, runs h and answers its error.
func (s *server) authenticated(h endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := s.authenticate(r)
		if err == nil && !c.service {
			if wait := s.byAccount.Take(string(c.account), time.Now()); wait > 0 {
				err = rateLimited(wait)
			} else if as := r.URL.Query().Get("as"); as != "" && domain.AccountID(as) != c.account {
				// On every endpoint, those that act as the sender of
				// "from" too: a user acts only as its own account.
				err = errActsAsOther
			}
		}
		if err == nil {
			err = h(w, r, c)
		}
		if err != nil {
			s.fail(w, r, err)
		}
	})
}

// recoverer turns a panic of a handler into a 500 internal reply and a
// log line, instead of a dropped connection. Endpoints write their reply
// last, so a panic comes before anything was written. (No wrapper tracks
// writes: it would hide the server's writer from http.MaxBytesReader,
// which then could not close a connection that sent too much.)
func (s *server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("http api handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			writeError(w, &apiError{Status: http.StatusInternalServerError, Code: wire.CodeInternal, Message: "internal error"})
		}()
		next.ServeHTTP(w, r)
	})
}
