// Command notify-receiver is an example receiver of Parley's offline
// notifications, written from docs/notifications.md alone: it verifies
// each request's signature and timestamp, drops notifications it has seen
// (delivery is at least once), and prints the others as NDJSON, one a
// line — where a real service would look up the account's device tokens
// and call APNs or FCM.
package main

import (
	"container/list"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// Notification is one notification, as docs/notifications.md lists it.
type Notification struct {
	ID           string `json:"id"`
	Account      string `json:"account"`
	Conversation string `json:"conversation"`
	MsgID        int64  `json:"msgId"`
	Sender       string `json:"sender"`
	Time         int64  `json:"time"`
	Kind         string `json:"kind"`
	Preview      string `json:"preview"`
	Truncated    bool   `json:"truncated,omitempty"`
	Unread       int64  `json:"unread"`
}

const (
	// tolerance is how far a request's timestamp may be from our clock.
	tolerance = 5 * time.Minute
	// maxBody bounds a request: Parley sends at most 256 KiB.
	maxBody = 1 << 20
	// remembered is how many notification ids are kept for dedup.
	remembered = 100_000
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "address to listen on")
	secret := flag.String("secret", os.Getenv("PARLEY_NOTIFY_SECRET"), "the --notify-secret Parley signs with (default $PARLEY_NOTIFY_SECRET)")
	flag.Parse()
	if len(*secret) < 16 {
		log.Fatal("need --secret (or PARLEY_NOTIFY_SECRET) of at least 16 bytes, the same as Parley's --notify-secret")
	}
	r := NewReceiver([]byte(*secret), os.Stdout)
	log.Printf("receiving notifications on http://%s/", *listen)
	log.Fatal(http.ListenAndServe(*listen, r))
}

// Receiver is the webhook's handler.
type Receiver struct {
	secret []byte
	now    func() time.Time

	mu   sync.Mutex
	out  *json.Encoder
	seen *seen
}

// NewReceiver prints the notifications it accepts to out.
func NewReceiver(secret []byte, out io.Writer) *Receiver {
	return &Receiver{secret: secret, now: time.Now, out: json.NewEncoder(out), seen: newSeen(remembered)}
}

// ServeHTTP answers 200 to a request it verified and read, 401 to one
// whose signature or timestamp does not verify (Parley drops it: the
// secrets differ, retrying will not help), 400 to a body it cannot read,
// and 500 when it cannot print (Parley then retries).
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxBody))
	if err != nil {
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	// Verify the exact bytes received, before parsing them.
	if err := Verify(r.secret, req.Header.Get("Parley-Timestamp"), req.Header.Get("Parley-Signature"), body, r.now()); err != nil {
		log.Printf("refused a request: %v", err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var b struct {
		Notifications []Notification `json:"notifications"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		http.Error(w, "cannot parse the body", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range b.Notifications {
		if r.seen.has(n.ID) {
			continue // a redelivery: already handled
		}
		if err := r.out.Encode(n); err != nil {
			http.Error(w, "cannot print", http.StatusInternalServerError)
			return
		}
		r.seen.add(n.ID)
	}
	w.WriteHeader(http.StatusOK)
}

// ErrBadSignature: the request does not verify.
var ErrBadSignature = errors.New("bad signature")

// Verify checks Parley-Timestamp and Parley-Signature against body:
// "v1=" + hex(HMAC-SHA256(secret, timestamp + "." + body)), with the
// timestamp (Unix seconds) within tolerance of now.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: no valid Parley-Timestamp", ErrBadSignature)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp %d is %v from our clock", ErrBadSignature, ts, d.Round(time.Second))
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp + "."))
	mac.Write(body)
	want := "v1=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(signature), []byte(want)) {
		return fmt.Errorf("%w: Parley-Signature does not match", ErrBadSignature)
	}
	return nil
}

// seen remembers the last n ids, oldest forgotten first.
type seen struct {
	n     int
	ids   map[string]*list.Element
	order *list.List
}

func newSeen(n int) *seen { return &seen{n: n, ids: map[string]*list.Element{}, order: list.New()} }

func (s *seen) has(id string) bool { _, ok := s.ids[id]; return ok }

func (s *seen) add(id string) {
	s.ids[id] = s.order.PushBack(id)
	if s.order.Len() > s.n {
		oldest := s.order.Front()
		s.order.Remove(oldest)
		delete(s.ids, oldest.Value.(string))
	}
}
