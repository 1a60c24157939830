package notify_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/projections/notify"
)

var secret = []byte("0123456789abcdef-secret")

// receiver is a webhook endpoint that answers from a script and keeps
// what it was sent.
type receiver struct {
	t      *testing.T
	mu     sync.Mutex
	script []int // statuses to answer, in turn; then 200
	bodies [][]byte
	got    map[string]int // notification id → times received with a 2xx
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if err := notify.Verify(secret, req.Header.Get(notify.HeaderTimestamp), req.Header.Get(notify.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
		r.t.Errorf("signature: %v", err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	status := http.StatusOK
	if len(r.script) > 0 {
		status, r.script = r.script[0], r.script[1:]
	}
	r.bodies = append(r.bodies, body)
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	if status == http.StatusOK {
		var b struct{ Notifications []notify.Notification }
		if err := json.Unmarshal(body, &b); err != nil {
			r.t.Errorf("body %s: %v", body, err)
		}
		for _, n := range b.Notifications {
			r.got[n.ID]++
		}
	}
	w.WriteHeader(status)
}

func startWebhook(t *testing.T, r *receiver, cfg notify.WebhookConfig) *notify.Webhook {
	t.Helper()
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	cfg.URL, cfg.Secret = srv.URL, secret
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	}
	w, err := notify.NewWebhook(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func notes(n int) []notify.Notification {
	out := make([]notify.Notification, n)
	for i := range out {
		out[i] = notify.Notification{ID: string(rune('a'+i%26)) + string(rune('A'+i/26)), Account: "bob", Conversation: "d:alice:bob", MsgID: int64(i + 1), Sender: "alice"}
	}
	return out
}

func TestWebhookRetriesUntilAccepted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []int
	}{
		{"500 then 200", []int{500, 502, 503}},
		{"429 with Retry-After", []int{429}},
		{"accepted at once", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &receiver{t: t, script: tc.script, got: map[string]int{}}
			w := startWebhook(t, r, notify.WebhookConfig{})
			ns := notes(5)
			if err := w.Deliver(context.Background(), ns); err != nil {
				t.Fatal(err)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, n := range ns {
				if r.got[n.ID] != 1 {
					t.Errorf("notification %s accepted %d times, want once", n.ID, r.got[n.ID])
				}
			}
			if len(r.bodies) != len(tc.script)+1 {
				t.Errorf("%d requests, want %d", len(r.bodies), len(tc.script)+1)
			}
		})
	}
}

func TestWebhookDropsWhatIsRefused(t *testing.T) {
	r := &receiver{t: t, script: []int{400}, got: map[string]int{}}
	w := startWebhook(t, r, notify.WebhookConfig{})
	if err := w.Deliver(context.Background(), notes(3)); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bodies) != 1 || len(r.got) != 0 {
		t.Fatalf("a 400 answer: %d requests, %d accepted; want 1 request, dropped", len(r.bodies), len(r.got))
	}
}

func TestWebhookBatchesWithinBounds(t *testing.T) {
	r := &receiver{t: t, got: map[string]int{}}
	w := startWebhook(t, r, notify.WebhookConfig{MaxBatch: 4, MaxBatchBytes: 4 << 10})
	ns := notes(50)
	var wg sync.WaitGroup
	for i := 0; i < len(ns); i += 10 {
		wg.Go(func() {
			if err := w.Deliver(context.Background(), ns[i:i+10]); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != len(ns) {
		t.Fatalf("%d notifications accepted, want %d", len(r.got), len(ns))
	}
	for _, b := range r.bodies {
		var v struct{ Notifications []json.RawMessage }
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		if len(v.Notifications) > 4 || len(b) > 4<<10 {
			t.Errorf("a batch of %d notifications, %d bytes: over its bounds", len(v.Notifications), len(b))
		}
	}
}

func TestVerifyRefusesTamperingAndOldTimestamps(t *testing.T) {
	body := []byte(`{"notifications":[]}`)
	now := time.Now()
	ts := now.Unix()
	sig := notify.Sign(secret, ts, body)
	for _, tc := range []struct {
		name    string
		ts      int64
		sig     string
		body    []byte
		wantErr bool
	}{
		{"as signed", ts, sig, body, false},
		{"body changed", ts, sig, []byte(`{"notifications":[{}]}`), true},
		{"timestamp changed", ts + 1, sig, body, true},
		{"too old", ts - 600, notify.Sign(secret, ts-600, body), body, true},
		{"other secret", ts, notify.Sign([]byte("another secret, 16+"), ts, body), body, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := notify.Verify(secret, strconv.FormatInt(tc.ts, 10), tc.sig, tc.body, now, 5*time.Minute)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Verify: %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

// The signature of the example in docs/notifications.md, which
// examples/notify-receiver checks too: a receiver written from the docs
// verifies what Parley signs.
func TestSignMatchesTheDocumentedExample(t *testing.T) {
	got := notify.Sign([]byte(DocSecret), DocTimestamp, []byte(DocBody))
	if got != DocSignature {
		t.Fatalf("Sign: %s, want the documented %s", got, DocSignature)
	}
}

// The example of docs/notifications.md.
const (
	DocSecret    = "0123456789abcdef-change-me"
	DocTimestamp = 1795968627
	DocBody      = `{"notifications":[{"id":"d53a3ead0dae3b2a599f83d7e95128cc","account":"bob","conversation":"d:alice:bob","msgId":281474976710656,"sender":"alice","time":1795968627122,"kind":"text","preview":"hi bob","unread":1}]}`
	DocSignature = "v1=6e742d0d616f8def7e4ad972969e059b51724b31d79bfdd8792b731a4ce70747"
)
