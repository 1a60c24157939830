package httpapi_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/transport/httpapi"
)

func TestBackupEndpoint(t *testing.T) {
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	e := newEnv(t, func(c *httpapi.Config) {
		c.Backup = func(ctx context.Context, w io.Writer) error {
			if _, err := io.WriteString(w, "first"); err != nil {
				return err
			}
			select {
			case started <- struct{}{}:
			default:
			}
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
			_, err := io.WriteString(w, "second")
			return err
		}
	})
	path := "/api/v1/backup"

	t.Run("a user may not", func(t *testing.T) {
		r := e.do(req{Method: http.MethodGet, Path: path, Auth: e.user("alice", "phone")})
		if r.Status != http.StatusForbidden || r.errorCode(t) != "forbidden" {
			t.Fatalf("got %d %s, want 403 forbidden", r.Status, r.Body)
		}
	})
	t.Run("not with HEAD", func(t *testing.T) {
		r := e.do(req{Method: http.MethodHead, Path: path, Auth: service()})
		if r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET" {
			t.Fatalf("got %d %v, want 405 with Allow: GET", r.Status, r.Header)
		}
		if r := e.do(req{Method: http.MethodPost, Path: path, Auth: service()}); r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET" {
			t.Fatalf("POST: got %d %v, want 405 with Allow: GET", r.Status, r.Header)
		}
		if r := e.do(req{Method: http.MethodDelete, Path: path}); r.Status != http.StatusUnauthorized {
			t.Fatalf("DELETE without a credential: got %d, want 401 before 405", r.Status)
		}
		if r := e.do(req{Method: http.MethodHead, Path: path, Auth: e.user("alice", "phone")}); r.Status != http.StatusForbidden {
			t.Fatalf("HEAD with a user's token: got %d, want 403", r.Status)
		}
		select {
		case <-started:
			t.Fatal("a HEAD took a backup")
		default:
		}
	})
	t.Run("nobody without a credential", func(t *testing.T) {
		r := e.do(req{Method: http.MethodGet, Path: path})
		if r.Status != http.StatusUnauthorized {
			t.Fatalf("got %d %s, want 401", r.Status, r.Body)
		}
	})
	t.Run("one at a time", func(t *testing.T) {
		first := make(chan resp, 1)
		go func() { first <- e.do(req{Method: http.MethodGet, Path: path, Auth: service()}) }()
		<-started
		r := e.do(req{Method: http.MethodGet, Path: path, Auth: service()})
		if r.Status != http.StatusTooManyRequests || r.errorCode(t) != "rate_limited" || r.Header.Get("Retry-After") == "" {
			t.Fatalf("a second backup: got %d %v %s, want 429 rate_limited with Retry-After", r.Status, r.Header, r.Body)
		}
		close(release)
		got := <-first
		if got.Status != http.StatusOK || string(got.Body) != "firstsecond" {
			t.Fatalf("the backup: got %d %q", got.Status, got.Body)
		}
		if ct := got.Header.Get("Content-Type"); ct != "application/x-tar" {
			t.Errorf("Content-Type %q", ct)
		}
		if cd := got.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="parley-backup-`) {
			t.Errorf("Content-Disposition %q", cd)
		}
		if r := e.do(req{Method: http.MethodGet, Path: path, Auth: service()}); r.Status != http.StatusOK {
			t.Fatalf("a backup after the first ended: got %d %s", r.Status, r.Body)
		}
	})
}

func TestBackupFailures(t *testing.T) {
	t.Run("not offered", func(t *testing.T) {
		e := newEnv(t, nil)
		r := e.do(req{Method: http.MethodGet, Path: "/api/v1/backup", Auth: service()})
		if r.Status != http.StatusNotImplemented || r.errorCode(t) != "unavailable" {
			t.Fatalf("got %d %s, want 501 unavailable", r.Status, r.Body)
		}
	})
	t.Run("fails before streaming", func(t *testing.T) {
		e := newEnv(t, func(c *httpapi.Config) {
			c.Backup = func(context.Context, io.Writer) error { return errors.New("disk full") }
		})
		r := e.do(req{Method: http.MethodGet, Path: "/api/v1/backup", Auth: service()})
		if r.Status != http.StatusInternalServerError || r.errorCode(t) != "internal" {
			t.Fatalf("got %d %s, want 500 internal", r.Status, r.Body)
		}
	})
	t.Run("fails while streaming", func(t *testing.T) {
		e := newEnv(t, func(c *httpapi.Config) {
			c.Backup = func(_ context.Context, w io.Writer) error {
				if _, err := io.WriteString(w, strings.Repeat("x", 64<<10)); err != nil {
					return err
				}
				return errors.New("disk gone")
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		hr, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+"/api/v1/backup", nil)
		hr.Header.Set("Authorization", service())
		res, err := e.srv.Client().Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status %d", res.StatusCode)
		}
		// The stream must end in an error, not in a clean end that a
		// reader could take for a whole (if short) backup.
		if _, err := io.ReadAll(res.Body); err == nil {
			t.Fatal("the cut stream read to a clean end")
		}
	})
}
