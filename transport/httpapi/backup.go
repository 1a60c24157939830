package httpapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/parley-chat/parley/transport/wire"
)

// backupWriteTimeout bounds each write of a backup's stream: a client
// that stops reading for this long loses it, and the backup ends.
const backupWriteTimeout = time.Minute

// backupRetry is the wait a request for a backup is told while another
// is under way.
const backupRetry = 10 * time.Second

// backup streams a backup of the node as a tar: a service's request only,
// one at a time. Nothing is written until the backup has been taken, so a
// backup that cannot be taken is answered with its error; one that fails
// once streaming ends the connection without the stream's end, which
// every reader of a backup notices (its manifest comes last).
func (s *server) backup(w http.ResponseWriter, r *http.Request, c caller) error {
	if !c.service {
		return &apiError{Status: http.StatusForbidden, Code: wire.CodeForbidden, Message: "only a service may take a backup"}
	}
	if r.Method == http.MethodHead {
		// The mux answers HEAD with GET's handler: it would take a whole
		// backup to throw away.
		w.Header().Set("Allow", http.MethodGet)
		return &apiError{Status: http.StatusMethodNotAllowed, Code: wire.CodeInvalidArgument, Message: "a backup is only streamed, with GET"}
	}
	if s.cfg.Backup == nil {
		return &apiError{Status: http.StatusNotImplemented, Code: wire.CodeUnavailable,
			Message: "this server keeps no state of its own to back up (its log is Kafka, its read models PostgreSQL and Redis: back those up)"}
	}
	if !s.backingUp.TryLock() {
		return &apiError{Status: http.StatusTooManyRequests, Code: wire.CodeRateLimited, Message: "a backup is under way", RetryAfter: backupRetry}
	}
	defer s.backingUp.Unlock()
	// The server's deadlines are for requests that end: the read deadline
	// would cancel the request's context, the write deadline cut the
	// stream. The stream lifts the first and moves the second forward
	// before every write.
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	sw := &streamWriter{w: w, rc: rc, began: time.Now()}
	err := s.cfg.Backup(r.Context(), sw)
	if err == nil {
		return nil
	}
	if !sw.started {
		return err
	}
	s.log.Error("backup failed while streaming; the client's copy is cut short", "err", err)
	panic(http.ErrAbortHandler)
}

// streamWriter writes a backup's reply: its headers before the first
// byte, and a fresh write deadline before every write.
type streamWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	began   time.Time
	started bool
}

func (sw *streamWriter) Write(p []byte) (int, error) {
	if !sw.started {
		sw.started = true
		h := sw.w.Header()
		h.Set("Content-Type", "application/x-tar")
		h.Set("Content-Disposition", `attachment; filename="parley-backup-`+sw.began.UTC().Format("20060102T150405Z")+`.tar"`)
		h.Set("Cache-Control", "no-store")
		sw.w.WriteHeader(http.StatusOK)
	}
	if err := sw.rc.SetWriteDeadline(time.Now().Add(backupWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return 0, err
	}
	return sw.w.Write(p)
}
