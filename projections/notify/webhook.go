package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// Webhook headers (docs/notifications.md).
const (
	// HeaderTimestamp is the Unix time, in seconds, at which the request
	// was signed: a receiver refuses one too old, so that a recorded
	// request cannot be replayed later.
	HeaderTimestamp = "Parley-Timestamp"
	// HeaderSignature is "v1=" and the hex HMAC-SHA256, keyed with the
	// shared secret, of the timestamp, a ".", and the body's exact bytes.
	HeaderSignature = "Parley-Signature"
)

// Sign is the HeaderSignature value of body sent at timestamp (Unix
// seconds).
func Sign(secret []byte, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatInt(timestamp, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// ErrBadSignature: a request's signature or timestamp does not verify.
var ErrBadSignature = errors.New("bad webhook signature")

// Verify checks a request's HeaderTimestamp and HeaderSignature values
// against body, as a receiver does: the signature must match and the
// timestamp be within tolerance of now.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrBadSignature, timestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp %d is %v away", ErrBadSignature, ts, d)
	}
	if !hmac.Equal([]byte(signature), []byte(Sign(secret, ts, body))) {
		return fmt.Errorf("%w: signature does not match", ErrBadSignature)
	}
	return nil
}

// WebhookConfig configures a Webhook. Every field but URL and Secret has
// a default.
type WebhookConfig struct {
	// URL receives the notifications, POSTed as JSON.
	URL string
	// Secret keys the signature; at least 16 bytes.
	Secret []byte
	// MaxBatch and MaxBatchBytes bound one request: notifications and
	// bytes of body. Defaults 100 and 256 KiB.
	MaxBatch, MaxBatchBytes int
	// Linger is how long a request waits for more notifications once it
	// has one. Default 50ms.
	Linger time.Duration
	// MaxPendingBytes bounds the notifications taken and not yet
	// delivered, in bytes: past it Deliver waits (and the projection's lag
	// grows) instead of holding more. Default 4 MiB.
	MaxPendingBytes int
	// Concurrency is how many requests may be under way at once.
	// Default 2.
	Concurrency int
	// Timeout bounds one request. Default 10s.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before a failed request is
	// sent again, doubling from one to the other, with jitter. Defaults
	// 500ms and 1m.
	MinBackoff, MaxBackoff time.Duration
	// MaxRetryAfter bounds how long a Retry-After answer makes the
	// webhook wait. Default 10m.
	MaxRetryAfter time.Duration
	// Client sends the requests. Default: a client that follows no
	// redirect.
	Client *http.Client
	// Observer counts delivered and dropped notifications and retried
	// requests; nil counts nothing.
	Observer WebhookObserver
	// Logger reports retries and drops. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock that signs. Default time.Now.
	Now func() time.Time
}

// WebhookObserver counts what the webhook does.
type WebhookObserver interface {
	Observer
	// Retried counts a request that will be sent again; reason is
	// "network" or the HTTP status.
	Retried(reason string)
}

type noWebhookObserver struct{ noObserver }

func (noWebhookObserver) Retried(string) {}

func (c *WebhookConfig) setDefaults() {
	if c.MaxBatch == 0 {
		c.MaxBatch = 100
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = 256 << 10
	}
	if c.Linger == 0 {
		c.Linger = 50 * time.Millisecond
	}
	if c.MaxPendingBytes == 0 {
		c.MaxPendingBytes = 4 << 20
	}
	if c.Concurrency == 0 {
		c.Concurrency = 2
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 500 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = time.Minute
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = 10 * time.Minute
	}
	if c.Client == nil {
		c.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if c.Observer == nil {
		c.Observer = noWebhookObserver{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// maxNotificationBytes is the most one encoded notification takes: ids
// are bounded by the domain (a conversation of two 64-byte accounts, say),
// the preview by PreviewRunes.
const maxNotificationBytes = 2 << 10

// Validate reports every problem of c, with its defaults, at once.
func (c WebhookConfig) Validate() error {
	c.setDefaults()
	var errs []error
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("the notification webhook %q is not an http(s) URL", c.URL))
	}
	if len(c.Secret) < 16 {
		errs = append(errs, errors.New("the notification webhook needs a secret of at least 16 bytes"))
	}
	if c.MaxBatch < 1 {
		errs = append(errs, errors.New("a notification batch holds at least one notification"))
	}
	if c.MaxBatchBytes < maxNotificationBytes+64 {
		errs = append(errs, fmt.Errorf("a notification batch must allow at least %d bytes", maxNotificationBytes+64))
	}
	if c.MaxPendingBytes < c.MaxBatchBytes {
		errs = append(errs, errors.New("the pending notifications must allow at least one batch's bytes"))
	}
	if c.Concurrency < 1 || c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff {
		errs = append(errs, errors.New("the webhook needs a concurrency of at least 1 and 0 < MinBackoff <= MaxBackoff"))
	}
	return errors.Join(errs...)
}

// Webhook delivers notifications to an HTTP endpoint in signed batches,
// at least once: a request that fails on the network, or that is answered
// 429 or 5xx, is sent again until it is answered 2xx; any other answer
// (a 4xx: the receiver refuses the batch for good) drops the batch, with
// a log line and a count. Run does the work.
type Webhook struct {
	cfg     WebhookConfig
	in      chan item
	pending *semaphore.Weighted
}

// item is one encoded notification, with the call that waits for it.
type item struct {
	enc  []byte
	call *call
}

// call is one Deliver's notifications: done closes when the last is
// delivered or dropped.
type call struct {
	left atomic.Int64
	done chan struct{}
}

func (c *call) finish() {
	if c.left.Add(-1) == 0 {
		close(c.done)
	}
}

// NewWebhook returns a webhook; Run it.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Webhook{cfg: cfg, in: make(chan item), pending: semaphore.NewWeighted(int64(cfg.MaxPendingBytes))}, nil
}

// Deliver implements Deliverer: it returns once every notification of ns
// is delivered or dropped, or when ctx ends (those already taken are
// still delivered). It waits while MaxPendingBytes are taken.
func (w *Webhook) Deliver(ctx context.Context, ns []Notification) error {
	if len(ns) == 0 {
		return nil
	}
	c := &call{done: make(chan struct{})}
	c.left.Store(int64(len(ns)))
	for _, n := range ns {
		enc, err := json.Marshal(n)
		if err != nil {
			return err
		}
		if err := w.pending.Acquire(ctx, int64(len(enc))); err != nil {
			return err
		}
		select {
		case w.in <- item{enc: enc, call: c}:
		case <-ctx.Done():
			w.pending.Release(int64(len(enc)))
			return ctx.Err()
		}
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run gathers notifications into batches and sends them until ctx ends.
func (w *Webhook) Run(ctx context.Context) {
	batches := make(chan []item)
	done := make(chan struct{})
	for range w.cfg.Concurrency {
		go func() {
			defer func() { done <- struct{}{} }()
			for b := range batches {
				w.send(ctx, b)
			}
		}()
	}
	w.gather(ctx, batches)
	close(batches)
	for range w.cfg.Concurrency {
		<-done
	}
}

// gather cuts what Deliver hands over into batches: one closes when it is
// full (MaxBatch, MaxBatchBytes) or Linger after its first notification.
func (w *Webhook) gather(ctx context.Context, out chan<- []item) {
	var carry *item
	for {
		var b []item
		size := 0
		if carry != nil {
			b, size, carry = append(b, *carry), len(carry.enc), nil
		} else {
			select {
			case it := <-w.in:
				b, size = append(b, it), len(it.enc)
			case <-ctx.Done():
				return
			}
		}
		linger := time.NewTimer(w.cfg.Linger)
	fill:
		for len(b) < w.cfg.MaxBatch {
			select {
			case it := <-w.in:
				if size+len(it.enc)+1 > w.cfg.MaxBatchBytes-len(envelopeOpen)-len(envelopeClose) {
					carry = &it
					break fill
				}
				b, size = append(b, it), size+len(it.enc)+1
			case <-linger.C:
				break fill
			case <-ctx.Done():
				linger.Stop()
				return
			}
		}
		linger.Stop()
		select {
		case out <- b:
		case <-ctx.Done():
			return
		}
	}
}

const (
	envelopeOpen  = `{"notifications":[`
	envelopeClose = `]}`
)

// send posts a batch until it is delivered or dropped, or ctx ends, and
// then lets its callers go on.
func (w *Webhook) send(ctx context.Context, b []item) {
	body := make([]byte, 0, w.cfg.MaxBatchBytes)
	body = append(body, envelopeOpen...)
	for i, it := range b {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, it.enc...)
	}
	body = append(body, envelopeClose...)
	outcome, ok := w.post(ctx, body, len(b))
	if !ok {
		return // ctx ended: the callers are gone, and the records are read again
	}
	w.cfg.Observer.Notified(outcome, len(b))
	for _, it := range b {
		w.pending.Release(int64(len(it.enc)))
		it.call.finish()
	}
}

// post sends body until an answer settles it: "sent" (2xx) or "dropped"
// (any other answer but 429 and 5xx). ok is false when ctx ended first.
func (w *Webhook) post(ctx context.Context, body []byte, n int) (outcome string, ok bool) {
	for attempt := 0; ; attempt++ {
		status, retryAfter, err := w.postOnce(ctx, body)
		var reason string
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return "", false
			}
			reason = "network"
		case status >= 200 && status < 300:
			return "sent", true
		case status == http.StatusTooManyRequests || status >= 500:
			reason = strconv.Itoa(status)
		default:
			w.cfg.Logger.Error("the notification webhook refused a batch; it is dropped", "status", status, "notifications", n)
			return "dropped", true
		}
		wait := w.backoff(attempt)
		if retryAfter > 0 {
			wait = min(retryAfter, w.cfg.MaxRetryAfter)
		}
		w.cfg.Observer.Retried(reason)
		w.cfg.Logger.Warn("the notification webhook failed; retrying", "reason", reason, "err", err, "in", wait, "notifications", n)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return "", false
		}
	}
}

// backoff is the wait before retry attempt+1: MinBackoff doubled per
// attempt up to MaxBackoff, of which a random half (so that many
// projectors do not retry in step).
func (w *Webhook) backoff(attempt int) time.Duration {
	d := w.cfg.MaxBackoff
	if attempt < 30 {
		d = min(w.cfg.MinBackoff<<attempt, w.cfg.MaxBackoff)
	}
	return d/2 + rand.N(d/2+1)
}

// postOnce sends body once, signed now, and returns the answer's status
// and Retry-After.
func (w *Webhook) postOnce(ctx context.Context, body []byte) (status int, retryAfter time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	now := w.cfg.Now()
	ts := now.Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "parley-notify/1")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(w.cfg.Secret, ts, body))
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	// Read a little of the answer so that the connection can be reused;
	// a receiver has nothing to tell in its body.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After"), now), nil
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date; 0
// when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, 1<<30)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
