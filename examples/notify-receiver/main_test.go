package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The example of docs/notifications.md, as Parley signs it (Parley's own
// tests check that it signs exactly this).
const (
	docSecret    = "0123456789abcdef-change-me"
	docTimestamp = "1795968627"
	docBody      = `{"notifications":[{"id":"d53a3ead0dae3b2a599f83d7e95128cc","account":"bob","conversation":"d:alice:bob","msgId":281474976710656,"sender":"alice","time":1795968627122,"kind":"text","preview":"hi bob","unread":1}]}`
	docSignature = "v1=6e742d0d616f8def7e4ad972969e059b51724b31d79bfdd8792b731a4ce70747"
)

var docTime = time.Unix(1795968627, 0)

func TestVerifyTheDocumentedExample(t *testing.T) {
	if err := Verify([]byte(docSecret), docTimestamp, docSignature, []byte(docBody), docTime.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// sign signs as docs/notifications.md says.
func sign(secret, ts string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(body)))
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

func post(r *Receiver, ts, sig, body string) int {
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Parley-Timestamp", ts)
	req.Header.Set("Parley-Signature", sig)
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	return w.Code
}

func TestReceiver(t *testing.T) {
	var out bytes.Buffer
	r := NewReceiver([]byte(docSecret), &out)
	r.now = func() time.Time { return docTime }
	later := strconv.FormatInt(docTime.Add(10*time.Second).Unix(), 10)
	old := strconv.FormatInt(docTime.Add(-10*time.Minute).Unix(), 10)
	for _, tc := range []struct {
		name, ts, sig, body string
		want                int
	}{
		{"as Parley signed it", docTimestamp, docSignature, docBody, 200},
		{"the same notification again (a redelivery)", later, sign(docSecret, later, []byte(docBody)), docBody, 200},
		{"body changed", docTimestamp, docSignature, strings.Replace(docBody, "hi bob", "hi eve", 1), 401},
		{"timestamp changed", later, docSignature, docBody, 401},
		{"a replay 10 minutes later", old, sign(docSecret, old, []byte(docBody)), docBody, 401},
		{"another secret", docTimestamp, sign("another secret, 16+", docTimestamp, []byte(docBody)), docBody, 401},
		{"no signature", docTimestamp, "", docBody, 401},
		{"signed garbage", docTimestamp, sign(docSecret, docTimestamp, []byte("[1]")), "[1]", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := post(r, tc.ts, tc.sig, tc.body); got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
		})
	}
	want := `{"id":"d53a3ead0dae3b2a599f83d7e95128cc","account":"bob","conversation":"d:alice:bob","msgId":281474976710656,"sender":"alice","time":1795968627122,"kind":"text","preview":"hi bob","unread":1}` + "\n"
	if out.String() != want {
		t.Fatalf("printed\n%s\nwant it once:\n%s", out.String(), want)
	}
}
