package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/parley-chat/parley/transport/wire"
)

// decodeBody reads r's JSON object body into dst. Like a socket frame, the
// body must be one JSON object; fields of the wrong JSON type are
// bad_frame, unknown fields are ignored.
func (s *server) decodeBody(w http.ResponseWriter, r *http.Request, dst any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &apiError{Status: http.StatusUnsupportedMediaType, Code: wire.CodeInvalidArgument,
			Message: "the body must have Content-Type application/json"}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return &apiError{Status: http.StatusRequestEntityTooLarge, Code: wire.CodeTooLarge,
			Message: fmt.Sprintf("the body is larger than %d bytes", tooBig.Limit)}
	case err != nil:
		return &apiError{Status: http.StatusBadRequest, Code: wire.CodeBadFrame, Message: "cannot read the body"}
	}
	return decodeJSON(b, dst)
}

// decodeJSON parses one JSON object into dst. The body must be valid
// UTF-8 (RFC 8259 8.1): encoding/json would silently replace bad bytes
// with U+FFFD, storing a message its sender never wrote, where the socket
// closes such a frame with 1007.
func decodeJSON(b []byte, dst any) error {
	if !utf8.Valid(b) {
		return &apiError{Status: http.StatusBadRequest, Code: wire.CodeBadFrame, Message: "the body is not valid UTF-8"}
	}
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return &apiError{Status: http.StatusBadRequest, Code: wire.CodeBadFrame, Message: "the body must be one JSON object"}
	}
	if err := json.Unmarshal(trimmed, dst); err != nil {
		return &apiError{Status: http.StatusBadRequest, Code: wire.CodeBadFrame, Message: "cannot parse JSON: " + err.Error()}
	}
	if wire.HasLoneSurrogate(trimmed) { // decoded as U+FFFD: refused like bad bytes
		return &apiError{Status: http.StatusBadRequest, Code: wire.CodeBadFrame, Message: `a \u escape of half a surrogate pair, alone, is not a character`}
	}
	return nil
}

// queryInt reads an optional integer query parameter; absent is 0.
// queryBool reads a flag: "true" or "false", absent for false. Nothing
// else is taken, so that a typo does not silently read as false.
func queryBool(q url.Values, name string) (bool, error) {
	switch v := q.Get(name); v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, invalid(fmt.Sprintf("%s must be true or false, got %.40q", name, v))
	}
}

func queryInt(q url.Values, name string) (int64, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, invalid(fmt.Sprintf("%s must be an integer, got %.40q", name, v))
	}
	return n, nil
}
