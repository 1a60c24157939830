package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/transport/httpapi"
)

// FuzzSendBody checks I6 for the body of POST /api/v1/messages against a
// real node: whatever the body, the API answers (never panics, never 5xx),
// refuses anything that is not one JSON object with 400 bad_frame or 413,
// and every refusal is a JSON error with a code. "$GROUP" in an input is
// replaced by a group alice owns, so that group sends are reachable.
//
// The seeds are small on purpose: the engine minimizes every new
// interesting input with real sends, which for a 16 KiB input takes most
// of a minute (TestBadInput covers the size limits).
func FuzzSendBody(f *testing.F) {
	seeds := []string{
		// Accepted.
		`{"to":"bob","clientMsgId":"c1","body":"hi"}`,
		`{"to":"bob","clientMsgId":"c1","body":"hi","retry":true}`,
		`{"group":"$GROUP","clientMsgId":"g1","kind":"text","body":"\u00e9\ud83d\ude00"}`,
		`{"from":{"account":"alice","device":"phone"},"to":"alice","clientMsgId":"self","body":""}`,
		` {"to":"bob","clientMsgId":"c2","kind":"a/b.c-d_e","extra":[1,{"x":null}]} `,
		// Refused by the service.
		`{}`,
		`{"to":"bob"}`,
		`{"to":"bob","group":"$GROUP","clientMsgId":"c"}`,
		`{"group":"g0","clientMsgId":"c"}`,
		`{"to":"b:o/b","clientMsgId":"c"}`,
		`{"to":"bob","clientMsgId":"c","kind":"UPPER"}`,
		`{"from":{"account":"bob","device":"phone"},"to":"alice","clientMsgId":"c"}`,
		`{"to":"bob","clientMsgId":"` + strings.Repeat("x", 65) + `"}`,
		// Not one JSON object.
		``,
		` `,
		`null`,
		`[]`,
		`"to"`,
		`{`,
		`{"to":`,
		`{"to":"bob"`,
		`{"to":"bob"}}`,
		`{"to":"bob"} {"to":"bob"}`,
		`{"to":5}`,
		`{"retry":"yes"}`,
		`{"from":"alice"}`,
		`{"to":"\ud800","clientMsgId":"c"}`,
		"{\"to\":\"bob\",\"clientMsgId\":\"c\",\"body\":\"\xff\xfe\"}",
		"\xef\xbb\xbf{\"to\":\"bob\",\"clientMsgId\":\"c\"}",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	n := startNode(f)
	cfg := apiConfig(n)
	cfg.MaxBodyBytes = 64 << 10
	h, err := httpapi.New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	tok, err := n.Tokens().Mint("alice", "phone", 24*time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	// The group is made through the API itself.
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/api/v1/groups", strings.NewReader(`{"name":"fuzz","accounts":["bob"]}`))
	r.Header.Set("Authorization", "Bearer "+tok)
	r.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, r)
	var g struct {
		Group struct {
			Group string `json:"group"`
		} `json:"group"`
	}
	if rec.Code != http.StatusCreated || json.Unmarshal(rec.Body.Bytes(), &g) != nil {
		f.Fatalf("cannot create the group: %d %s", rec.Code, rec.Body)
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		body = bytes.ReplaceAll(body, []byte("$GROUP"), []byte(g.Group.Group))
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/api/v1/messages", bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("Content-Type", "application/json; charset=utf-8")
		h.ServeHTTP(rec, r)

		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			t.Fatalf("content type %q", rec.Header().Get("Content-Type"))
		}
		var reply map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &reply); err != nil {
			t.Fatalf("answer is not a JSON object: %q", rec.Body)
		}
		if rec.Code != http.StatusOK {
			if code, _ := reply["code"].(string); code == "" {
				t.Fatalf("refusal without a code: %s", rec.Body)
			}
		} else if _, ok := reply["msgId"]; !ok {
			t.Fatalf("200 without msgId: %s", rec.Body)
		}
		// Garbage never gets through.
		trimmed := bytes.TrimSpace(body)
		if !json.Valid(body) || len(trimmed) == 0 || trimmed[0] != '{' {
			if rec.Code != http.StatusBadRequest && rec.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d for a body that is not one JSON object: %q", rec.Code, body)
			}
			if reply["code"] != "bad_frame" && reply["code"] != "too_large" {
				t.Fatalf("code %v for a body that is not one JSON object", reply["code"])
			}
		}
	})
}
