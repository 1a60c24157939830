package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// DecodeError is a frame the server cannot take, with the code to answer.
type DecodeError struct {
	Code Code
	// ID is the request id when it could be read, so the error can be matched.
	ID     string
	Reason string
}

func (e *DecodeError) Error() string { return string(e.Code) + ": " + e.Reason }

// knownTypes are the request types, each with the fields (JSON names,
// besides id and type) that belong to it: the others are ignored, whatever
// their JSON type (docs/protocol.md, "Frames").
var knownTypes = map[string][]string{
	TypeHello:         {"token"},
	TypeRenew:         {"token"},
	TypePing:          nil,
	TypeSend:          {"to", "group", "clientMsgId", "kind", "body", "retry"},
	TypeSync:          {"conversation", "lastTime", "lastMsgId", "limit", "changes"},
	TypeConversations: {"since", "limit", "before", "beforeConversation"},
	TypeGroupCreate:   {"name", "accounts"},
	TypeGroupAdd:      {"group", "accounts"},
	TypeGroupRemove:   {"group", "accounts"},
	TypeGroups:        {"after"},
	TypeRead:          {"conversation", "msgId"},
	TypeReaders:       {"conversation", "msgId"},
	TypeTyping:        {"conversation"},
	TypePresence:      {"accounts"},
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
		err := json.Unmarshal(trimmed, &r)
		var mistyped *json.UnmarshalTypeError
		if errors.As(err, &mistyped) {
			// Perhaps only a field of another type: those are ignored.
			err = decodeOwnFields(trimmed, &r, err)
		}
		if err != nil {
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
	if _, ok := knownTypes[r.Type]; !ok {
		return Request{}, &DecodeError{Code: CodeUnknownType, ID: r.ID, Reason: fmt.Sprintf("unknown type %.40q", r.Type)}
	}
	return r, nil
}

// decodeOwnFields decodes frame, a JSON object that encoding/json read into
// r but for a value of the wrong JSON type, again into r with only the
// fields that belong to r's type (matched as encoding/json matches them,
// case aside), in their order: a mistyped field of another type is ignored
// like any field that does not belong, while one of r's own type is still
// an error. r's type must have been read; if not, it returns the error of
// the whole frame, whole.
func decodeOwnFields(frame []byte, r *Request, whole error) error {
	fields, known := knownTypes[r.Type]
	if !known {
		return whole
	}
	owns := func(key string) bool {
		if strings.EqualFold(key, "id") || strings.EqualFold(key, "type") {
			return true
		}
		for _, f := range fields {
			if strings.EqualFold(key, f) {
				return true
			}
		}
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(frame))
	if _, err := dec.Token(); err != nil { // the object's {
		return err
	}
	own := []byte{'{'}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return err
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return err
		}
		name, _ := key.(string)
		if !owns(name) {
			continue
		}
		if len(own) > 1 {
			own = append(own, ',')
		}
		quoted, err := json.Marshal(name)
		if err != nil {
			return err
		}
		own = append(append(append(own, quoted...), ':'), value...)
	}
	own = append(own, '}')
	*r = Request{}
	if err := json.Unmarshal(own, r); err != nil {
		*r = Request{}
		return err
	}
	return nil
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
