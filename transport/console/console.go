// Package console serves Parley's web console from the binary itself: a
// chat playground that speaks the WebSocket protocol like any client, and
// a read-only view of the event stream, projection lag and connections.
// Everything is embedded; the page makes no request outside Parley.
package console

import (
	"embed"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
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
	// Stream is the recent-events model the event view reads.
	Stream *stream.Recent
	// Status reports connections, online devices and lag.
	Status func() Status
	// DevTokens, when set, mints a token for any account and device: the
	// playground's sign-in. Leave nil outside development.
	DevTokens *auth.Tokens
	// DevTokenTTL is how long a minted token lives. Default 1h.
	DevTokenTTL time.Duration
}

// New returns the console handler, to mount at /console/.
func New(cfg Config) (http.Handler, error) {
	if cfg.Stream == nil || cfg.Status == nil {
		return nil, errors.New("console: stream and status are required")
	}
	if cfg.DevTokenTTL == 0 {
		cfg.DevTokenTTL = time.Hour
	}
	files, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /console/", http.StripPrefix("/console/", http.FileServerFS(files)))
	mux.HandleFunc("GET /console/api/config", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"devTokens": cfg.DevTokens != nil})
	})
	mux.HandleFunc("POST /console/api/token", cfg.token)
	mux.HandleFunc("GET /console/api/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, cfg.Status())
	})
	mux.HandleFunc("GET /console/api/events", cfg.events)
	return mux, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, code, text string) {
	writeJSON(w, status, map[string]string{"code": code, "error": text})
}

// token mints a development token: {"account": "...", "device": "..."}.
func (cfg Config) token(w http.ResponseWriter, r *http.Request) {
	if cfg.DevTokens == nil {
		fail(w, http.StatusNotFound, "not_found", "development tokens are off (parley serve --dev-tokens)")
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
		fail(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	}
	tok, err := cfg.DevTokens.Mint(a, domain.DeviceID(req.Device), cfg.DevTokenTTL)
	if err != nil {
		fail(w, http.StatusInternalServerError, "internal", err.Error())
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
func (cfg Config) events(w http.ResponseWriter, r *http.Request) {
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
	recent, live, stop := cfg.Stream.Watch()
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
