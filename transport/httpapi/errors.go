package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/wire"
)

// apiError is a refusal decided here rather than by the service: bad
// credentials, a body that is not JSON, a wrong content type. Errors of the
// service are mapped by api.Code, the one place shared with the socket.
type apiError struct {
	Status  int
	Code    wire.Code
	Message string
	// RetryAfter, for rate_limited, is how long until a retry may pass.
	RetryAfter time.Duration
}

func (e *apiError) Error() string { return string(e.Code) + ": " + e.Message }

func invalid(msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: wire.CodeInvalidArgument, Message: msg}
}

// errorReply is the body of every error answer.
type errorReply struct {
	Code  wire.Code `json:"code"`
	Error string    `json:"error"`
	// RetryAfterMs is set for rate_limited only, as on the socket.
	RetryAfterMs int64 `json:"retryAfterMs,omitempty"`
}

// statusOf is the HTTP status of a wire code.
func statusOf(c wire.Code) int {
	switch c {
	case wire.CodeBadFrame, wire.CodeInvalidArgument, wire.CodeUnknownType:
		return http.StatusBadRequest
	case wire.CodeUnauthorized, wire.CodeTokenExpired:
		return http.StatusUnauthorized
	case wire.CodeForbidden, wire.CodeNotMember:
		return http.StatusForbidden
	case wire.CodeNotFound:
		return http.StatusNotFound
	case wire.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case wire.CodeTooLate:
		return http.StatusConflict
	case wire.CodeRateLimited:
		return http.StatusTooManyRequests
	case wire.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// fixedText is the only text a client gets for the codes whose cause is
// the server's own: the error of a failed PostgreSQL, Redis or Kafka call
// names hosts, users and tables, and is of no use to the client anyway.
// The cause goes to the log.
var fixedText = map[wire.Code]string{
	wire.CodeUnavailable: "the service cannot answer now; retry",
	wire.CodeInternal:    "internal error",
}

// fail answers err: an apiError as it is, anything else through api.Code.
// Errors of the domain keep their text: it describes the client's own
// input.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		code := api.Code(err)
		ae = &apiError{Status: statusOf(code), Code: code, Message: err.Error(), RetryAfter: api.RetryAfter(err)}
		if text, ok := fixedText[code]; ok {
			level := slog.LevelWarn
			if code == wire.CodeInternal {
				level = slog.LevelError
			}
			s.log.Log(r.Context(), level, "http api request failed", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
			ae.Message = text
		}
	}
	writeError(w, ae)
}

func writeError(w http.ResponseWriter, e *apiError) {
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="parley"`)
	}
	reply := errorReply{Code: e.Code, Error: e.Message}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(e.RetryAfter), 10))
		reply.RetryAfterMs = wire.RetryAfter(e.RetryAfter)
	}
	writeJSON(w, e.Status, reply)
}

// writeJSON answers v with status. The body is encoded before the header
// is written, so an encoding failure can still be answered 500.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorReply{Code: wire.CodeInternal, Error: "cannot encode the reply"})
	}
	b = append(b, '\n')
	h := w.Header()
	// The length up front lets a client (or proxy) see how much is coming
	// and refuse it; without it a reply over 2 KiB goes out chunked.
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
