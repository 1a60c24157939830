package console_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/parley-chat/parley/projections/stream"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/console"
)

func TestIsLoopback(t *testing.T) {
	tests := map[string]bool{
		"localhost": true, "LOCALHOST:8080": true, "localhost:0": true,
		"127.0.0.1": true, "127.0.0.1:8080": true, "127.9.9.9:1": true,
		"[::1]:8080": true, "::1": true, "[::1]": true, "[::ffff:127.0.0.1]:80": true,
		"": false, ":8080": false, "0.0.0.0:8080": false, "[::]:8080": false,
		"192.0.2.10:8080": false, "evil.example": false, "evil.example:8080": false,
		"localhost.": false, "localhost.evil.example": false, "127.0.0.1.nip.io": false,
		"127.1": false, "0x7f.0.0.1": false,
	}
	for in, want := range tests {
		if got := console.IsLoopback(in); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", in, got, want)
		}
	}
}

// serveOn serves a console with development tokens on a listener at addr.
func serveOn(t *testing.T, addr string, anyListener bool) string {
	t.Helper()
	tokens, err := auth.NewTokens([]byte("console-test-secret-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := console.New(console.Config{Stream: stream.NewRecent(10), Status: func() console.Status { return console.Status{} },
		DevTokens: tokens, AnyListener: anyListener})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return ln.Addr().String()
}

// A request that arrives on an address that is not loopback gets no token
// and no status, even with a loopback Host (a remote client can send any
// Host), unless the operator acknowledged it.
func TestDevTokensNeedALoopbackConnection(t *testing.T) {
	ip := nonLoopbackIP(t)
	for _, tc := range []struct {
		name        string
		listen      string
		anyListener bool
		wantToken   int
		wantStatus  int
	}{
		{"loopback", "127.0.0.1:0", false, 200, 200},
		{"not loopback", net.JoinHostPort(ip, "0"), false, 403, 401},
		{"not loopback, acknowledged", net.JoinHostPort(ip, "0"), true, 200, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveOn(t, tc.listen, tc.anyListener)
			_, port, _ := net.SplitHostPort(addr)
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/console/api/token", strings.NewReader(`{"account":"a","device":"b"}`))
			req.Host = "localhost:" + port
			req.Header.Set("Content-Type", "application/json")
			if got := status(t, req); got != tc.wantToken {
				t.Errorf("token: %d, want %d", got, tc.wantToken)
			}
			req, _ = http.NewRequest(http.MethodGet, "http://"+addr+"/console/api/status", nil)
			req.Host = "localhost:" + port
			if got := status(t, req); got != tc.wantStatus {
				t.Errorf("status: %d, want %d", got, tc.wantStatus)
			}
		})
	}
}

// A bad account or device id is answered invalid_argument with the field
// it is about, so that the sign-in form can show the error beside it.
func TestTokenNamesTheInvalidField(t *testing.T) {
	base := "http://" + serveOn(t, "127.0.0.1:0", false) + "/console/api/token"
	for _, tc := range []struct {
		name      string
		body      string
		wantCode  string
		wantField string
	}{
		{"account with a space", `{"account":"bob smith","device":"web"}`, "invalid_argument", "account"},
		{"account with a slash", `{"account":"a/b","device":"web"}`, "invalid_argument", "account"},
		{"account of 65 bytes", `{"account":"` + strings.Repeat("a", 65) + `","device":"web"}`, "invalid_argument", "account"},
		{"empty account", `{"account":"","device":"web"}`, "invalid_argument", "account"},
		{"device with a colon", `{"account":"bob","device":"web:1"}`, "invalid_argument", "device"},
		{"no device", `{"account":"bob"}`, "invalid_argument", "device"},
		{"not JSON", `{`, "bad_frame", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(base, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got map[string]string
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusBadRequest || got["code"] != tc.wantCode || got["field"] != tc.wantField || got["error"] == "" {
				t.Errorf("got %d %v, want 400 with code %q and field %q", resp.StatusCode, got, tc.wantCode, tc.wantField)
			}
		})
	}
}

func status(t *testing.T, req *http.Request) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// nonLoopbackIP is an IPv4 address of this machine that is not loopback;
// the test is skipped without one.
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skip(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	t.Skip("no address but loopback")
	return ""
}

func TestConfigValidate(t *testing.T) {
	_, err := console.New(console.Config{})
	if err == nil || !strings.Contains(err.Error(), "stream is required") || !strings.Contains(err.Error(), "status is required") {
		t.Errorf("New with nothing: %v", err)
	}
}
