// Package console serves Parley's web console from the binary itself: a
// chat playground that speaks the WebSocket protocol like any client, and
// a read-only view of the event stream, projection lag and connections.
// Everything is embedded; the page makes no request outside Parley.
package console

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/stream"
	"github.com/parley-chat/parley/transport/auth"
)

//go:embed static
var static embed.FS

// Status is what the status panel shows.
type Status struct {
	Connections int        `json:"connections"`
	Online      []string   `json:"online"`
	Lag         []LagEntry `json:"lag"`
}

// LagEntry is how far one projection is behind in one partition.
type LagEntry struct {
	Projection string `json:"projection"`
	Partition  int32  `json:"partition"`
	Records    int64  `json:"records"`
}

// Config configures the console.
type Config struct {
	// Stream is the recent-events model the event view reads. Required.
	Stream *stream.Recent
	// Status reports connections, online devices and lag. Required.
	Status func() Status
	// DevTokens, when set, mints a token for any account and device: the
	// playground's sign-in. It answers only a local request (see Local),
	// and a local request may also read the status and the event stream
	// without a credential. Leave nil outside development.
	DevTokens *auth.Tokens
	// DevTokenTTL is how long a minted token lives. Default 1h.
	DevTokenTTL time.Duration
	// AnyListener drops the one check of Local that concerns the listener
	// (that the connection arrived on a loopback address); the others stay.
	// The operator sets it knowingly (parley serve --dev-tokens-unsafe):
	// then anyone who reaches the listener can mint tokens by sending a
	// loopback Host.
	AnyListener bool
	// ServiceCredential, when set, lets a request with "Authorization:
	// Bearer svc:<credential>" read the status and the event stream. Empty:
	// only a local development request can read them.
	ServiceCredential string
	// Logger receives the causes of internal errors. Default
	// slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.DevTokenTTL == 0 {
		c.DevTokenTTL = time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Stream == nil {
		errs = append(errs, errors.New("console: a stream is required"))
	}
	if c.Status == nil {
		errs = append(errs, errors.New("console: a status is required"))
	}
	if c.DevTokenTTL < 0 {
		errs = append(errs, fmt.Errorf("console: the development token lifetime cannot be negative, got %s", c.DevTokenTTL))
	}
	return errors.Join(errs...)
}

// New returns the console handler, to mount at /console/.
func New(cfg Config) (http.Handler, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	files, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /console/", http.StripPrefix("/console/", http.FileServerFS(files)))
	mux.HandleFunc("GET /console/api/config", func(w http.ResponseWriter, r *http.Request) {
		local := cfg.Local(r) == nil
		writeJSON(w, http.StatusOK, map[string]bool{"devTokens": local, "credential": !local})
	})
	mux.HandleFunc("POST /console/api/token", cfg.token)
	mux.HandleFunc("GET /console/api/status", cfg.authorized(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, cfg.Status())
	}))
	mux.HandleFunc("GET /console/api/events", cfg.authorized(cfg.events))
	return mux, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// errorReply is the body of every error answer, as in the HTTP API.
type errorReply struct {
	Code string `json:"code"`
	// Field names the request field an invalid_argument is about, when it
	// is about one, so that a form can show the error beside it.
	Field string `json:"field,omitempty"`
	Error string `json:"error"`
}

func fail(w http.ResponseWriter, status int, code, text string) {
	writeJSON(w, status, errorReply{Code: code, Error: text})
}

// IsLoopback reports whether hostport ("host:port", "[::1]:port" or a bare
// host) names the loopback interface: "localhost" or a loopback address.
// Other names are not resolved: a name that resolves to 127.0.0.1 today
// may not tomorrow, which is what DNS rebinding does.
func IsLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// Local reports why r is not a local development request, or nil if it
// is one: development tokens are on; the connection arrived on a loopback
// address (unless AnyListener); the Host names loopback, so that a web
// page whose name was rebound to 127.0.0.1 is refused; the Origin, if any,
// is the console's own, so that another site's script is refused; the
// browser does not call it a cross-site request; and no proxy forwarded it
// (a local reverse proxy would make a remote request look local).
func (c Config) Local(r *http.Request) error {
	if c.DevTokens == nil {
		return errors.New("development tokens are off (parley serve --dev-tokens)")
	}
	if !c.AnyListener {
		a, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		if a == nil || !IsLoopback(a.String()) {
			return errors.New("development tokens are served on a loopback listener only")
		}
	}
	if !IsLoopback(r.Host) {
		return fmt.Errorf("development tokens need a loopback Host (localhost, 127.0.0.1 or [::1]), not %.100q", r.Host)
	}
	if o := r.Header.Get("Origin"); o != "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme != scheme || !strings.EqualFold(u.Host, r.Host) || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("a request from %.100q is not the console's own", o)
		}
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return fmt.Errorf("a %.20s request is not the console's own", site)
	}
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Real-Ip"} {
		if r.Header.Get(h) != "" {
			return fmt.Errorf("a request forwarded by a proxy (%s) is not local", h)
		}
	}
	return nil
}

// servicePrefix marks the service credential in a bearer header, as in the
// HTTP API.
const servicePrefix = "svc:"

// authorized runs h for a local development request or one that carries
// the service credential; anything else is answered 401.
func (c Config) authorized(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if c.Local(r) == nil || c.hasCredential(r) {
			h(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="parley console"`)
		fail(w, http.StatusUnauthorized, "unauthorized", "the console's status and events need Authorization: Bearer svc:<service credential>")
	}
}

func (c Config) hasCredential(r *http.Request) bool {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	secret, ok := strings.CutPrefix(strings.TrimSpace(cred), servicePrefix)
	return ok && auth.SecretEqual([]byte(secret), []byte(c.ServiceCredential))
}

// token mints a development token: {"account": "...", "device": "..."}.
// Only for a local request with a JSON body: a cross-origin page can POST
// text/plain without asking the browser first, but not application/json.
func (c Config) token(w http.ResponseWriter, r *http.Request) {
	if c.DevTokens == nil {
		fail(w, http.StatusNotFound, "not_found", "development tokens are off (parley serve --dev-tokens)")
		return
	}
	if err := c.Local(r); err != nil {
		fail(w, http.StatusForbidden, "forbidden", err.Error())
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		fail(w, http.StatusUnsupportedMediaType, "invalid_argument", "the body must have Content-Type application/json")
		return
	}
	var req struct {
		Account string `json:"account"`
		Device  string `json:"device"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "bad_frame", "want a JSON object with account and device")
		return
	}
	a, err := domain.ParseAccountID(req.Account)
	if err == nil {
		_, err = domain.ParseDeviceID(req.Device)
	}
	if err != nil {
		reply := errorReply{Code: "invalid_argument", Error: err.Error()}
		var invalid *domain.InvalidError
		if errors.As(err, &invalid) {
			reply.Field = invalid.Field
		}
		writeJSON(w, http.StatusBadRequest, reply)
		return
	}
	tok, err := c.DevTokens.Mint(a, domain.DeviceID(req.Device), c.DevTokenTTL)
	if err != nil {
		c.Logger.Error("cannot mint a development token", "err", err)
		fail(w, http.StatusInternalServerError, "internal", "internal error")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}

// eventWriteTimeout bounds each write of the event stream: a viewer that
// stops reading is dropped after it instead of holding the stream.
const eventWriteTimeout = 10 * time.Second

// keepAliveEvery is how often an idle event stream gets a comment line, so
// that proxies and the browser keep it open.
const keepAliveEvery = 15 * time.Second

// events streams the recent events and then the live ones as server-sent
// events, one JSON event per message, until the client goes away.
func (c Config) events(w http.ResponseWriter, r *http.Request) {
	// The server's timeouts are for requests that end: its read deadline
	// would cancel this request's context when it passes (the server reads
	// in the background to notice a closed connection), and its write
	// deadline would cut the stream. The stream lifts the first and moves
	// the second forward before every write.
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return
	}
	write := func(s string) bool {
		if err := rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		if _, err := io.WriteString(w, s); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	var buf strings.Builder
	appendEvent := func(e stream.Event) {
		b, _ := json.Marshal(e)
		buf.WriteString("data: ")
		buf.Write(b)
		buf.WriteString("\n\n")
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	recent, live, stop := c.Stream.Watch()
	defer stop()
	buf.WriteString(": parley events\n\n")
	for _, e := range recent {
		appendEvent(e)
	}
	if !write(buf.String()) {
		return
	}
	keepAlive := time.NewTicker(keepAliveEvery)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case e := <-live:
			buf.Reset()
			appendEvent(e)
			if !write(buf.String()) {
				return
			}
		case <-keepAlive.C:
			if !write(": keep-alive\n\n") {
				return
			}
		}
	}
}
