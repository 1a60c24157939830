package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// DecodeError is a frame the server cannot take, with the code to answer.
type DecodeError struct {
	Code Code
	// ID is the request id when it could be read, so the error can be matched.
	ID     string
	Reason string
}

func (e *DecodeError) Error() string { return string(e.Code) + ": " + e.Reason }

var knownTypes = map[string]bool{
	TypeHello: true, TypeRenew: true, TypePing: true, TypeSend: true, TypeSync: true,
	TypeConversations: true, TypeGroupCreate: true, TypeGroupAdd: true, TypeGroupRemove: true,
	TypeGroups: true, TypeRead: true, TypeReaders: true, TypeTyping: true, TypePresence: true,
}

// DecodeRequest parses one client frame. It checks the envelope (a JSON
// object with an id and a known type); the fields of each type are
// validated where they are used.
func DecodeRequest(frame []byte) (Request, *DecodeError) {
	var r Request
	trimmed := bytes.TrimSpace(frame)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Request{}, &DecodeError{Code: CodeBadFrame, Reason: "a frame must be one JSON object"}
	}
	if !decodeFast(trimmed, &r) { // it takes no surrogate escape
		r = Request{}
		if err := json.Unmarshal(trimmed, &r); err != nil {
			return Request{}, &DecodeError{Code: CodeBadFrame, ID: salvageID(trimmed), Reason: "cannot parse JSON: " + err.Error()}
		}
		if HasLoneSurrogate(trimmed) {
			return Request{}, &DecodeError{Code: CodeBadFrame, ID: r.ID, Reason: `a \u escape of half a surrogate pair, alone, is not a character`}
		}
	}
	if r.ID == "" {
		return Request{}, &DecodeError{Code: CodeInvalidArgument, Reason: "id is required"}
	}
	if len(r.ID) > MaxRequestIDLen {
		return Request{}, &DecodeError{Code: CodeInvalidArgument, Reason: fmt.Sprintf("id is longer than %d bytes", MaxRequestIDLen)}
	}
	if r.Type == "" {
		return Request{}, &DecodeError{Code: CodeInvalidArgument, ID: r.ID, Reason: "type is required"}
	}
	if !knownTypes[r.Type] {
		return Request{}, &DecodeError{Code: CodeUnknownType, ID: r.ID, Reason: fmt.Sprintf("unknown type %.40q", r.Type)}
	}
	return r, nil
}

// salvageID reads the top-level "id" of a frame that failed to parse, as
// far as the frame is readable, so that the client can match the error.
func salvageID(frame []byte) string {
	dec := json.NewDecoder(bytes.NewReader(frame))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return ""
		}
		if key == "id" {
			v, err := dec.Token()
			if s, ok := v.(string); ok && err == nil && len(s) <= MaxRequestIDLen {
				return s
			}
			return ""
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return ""
		}
	}
	return ""
}
