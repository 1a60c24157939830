package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/infra/backup"
)

// backupCmd takes a backup of a running single node through its HTTP API
// (GET /api/v1/backup): the node owns its store and log, which one process
// opens at a time, so the command is a client of the endpoint. The stream
// is checked against its manifest as it arrives, and the file appears
// under its name only when the whole backup matched.
func backupCmd(args []string, stdout, stderr io.Writer) error {
	f := newFlags("backup", stdout)
	out := f.string("out", "", "file to write the backup to, a tar (required; it must not exist); - writes it to stdout")
	srv := defineServiceClient(f)
	timeout := f.duration("timeout", 0, "how long the whole backup may take; 0 waits as long as it streams")
	rate := f.int("rate", 0, "bytes a second to read the backup at, so that the node spends less of its CPU on it at once; 0 reads as fast as it comes")
	if err := f.parse(args); err != nil {
		return err
	}
	f.check("out", *out != "", "name the file to write")
	srv.check(f)
	f.check("timeout", *timeout >= 0, "cannot be negative")
	f.check("rate", *rate == 0 || *rate >= 64<<10, "want 0 (no limit) or at least 65536")
	if err := f.err(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	began := time.Now()
	var (
		m   backup.Manifest
		err error
	)
	if *out == "-" {
		m, err = fetchBackup(ctx, srv, stdout, *rate)
		stdout = stderr // the summary must not mix with the backup
	} else {
		m, err = fetchBackupFile(ctx, srv, *out, *rate)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %d files, %d bytes, taken at %s, in %s\n",
		len(m.Files), m.Bytes(), m.CreatedAt.Format(time.RFC3339), time.Since(began).Round(time.Millisecond))
	return nil
}

// fetchBackupFile writes the backup to path by way of path.partial,
// renamed only once it is whole and on disk.
func fetchBackupFile(ctx context.Context, srv serviceClient, path string, rate int) (_ backup.Manifest, err error) {
	if _, err := os.Lstat(path); err == nil {
		return backup.Manifest{}, fmt.Errorf("cannot write the backup to %s: it exists", path)
	}
	partial := path + ".partial"
	file, err := os.OpenFile(partial, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return backup.Manifest{}, fmt.Errorf("cannot write the backup: %w", err)
	}
	defer func() {
		if err != nil {
			file.Close()
			os.Remove(partial)
		}
	}()
	m, err := fetchBackup(ctx, srv, file, rate)
	if err != nil {
		return m, err
	}
	if err := errors.Join(file.Sync(), file.Close()); err != nil {
		return m, fmt.Errorf("cannot write the backup: %w", err)
	}
	if err := os.Rename(partial, path); err != nil {
		return m, fmt.Errorf("cannot write the backup: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return m, nil
}

// fetchBackup asks the server for a backup and copies it to w, checking
// it on the way, at rate bytes a second when rate is not 0 (the server
// writes no faster than the client reads).
func fetchBackup(ctx context.Context, srv serviceClient, w io.Writer, rate int) (backup.Manifest, error) {
	resp, err := srv.do(ctx, http.MethodGet, "/backup")
	if err != nil {
		return backup.Manifest{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return backup.Manifest{}, fmt.Errorf("cannot take a backup: %w", answerError(resp))
	}
	body := io.Reader(resp.Body)
	if rate > 0 {
		body = &paced{r: resp.Body, rate: rate, began: time.Now()}
	}
	m, err := backup.Read(io.TeeReader(body, w), nil)
	if err == nil {
		err = node.CheckBackup(m)
	}
	if err != nil {
		return m, fmt.Errorf("the backup from %s is not whole: %w", *srv.url, err)
	}
	return m, nil
}

// restoreCmd restores a backup into a new data directory.
func restoreCmd(args []string, stdout, _ io.Writer) error {
	f := newFlags("restore", stdout)
	from := f.string("from", "", "the backup to restore, a file parley backup wrote (required); - reads it from stdin")
	dataDir := f.string("data-dir", "parley-data", "the data directory to restore into; it must be empty or not exist")
	check := f.bool("check", false, "only check the backup against its manifest; write nothing")
	if err := f.parse(args); err != nil {
		return err
	}
	f.check("from", *from != "", "name the backup to restore")
	f.check("data-dir", *check || *dataDir != "", "cannot be empty")
	if err := f.err(); err != nil {
		return err
	}
	in := io.Reader(os.Stdin)
	if *from != "-" {
		file, err := os.Open(*from)
		if err != nil {
			return fmt.Errorf("cannot read the backup: %w", err)
		}
		defer file.Close()
		in = file
	}
	if *check {
		m, err := backup.Read(in, nil)
		if err == nil {
			err = node.CheckBackup(m)
		}
		if err != nil {
			return fmt.Errorf("the backup is not whole: %w", err)
		}
		fmt.Fprintf(stdout, "the backup is whole: %d files, %d bytes, taken at %s\n", len(m.Files), m.Bytes(), m.CreatedAt.Format(time.RFC3339))
		return nil
	}
	m, err := backup.Restore(in, *dataDir, node.CheckBackup)
	if err != nil {
		return fmt.Errorf("cannot restore: %w", err)
	}
	fmt.Fprintf(stdout, "restored %d files, %d bytes, taken at %s, into %s; start it with parley serve --data-dir %s\n",
		len(m.Files), m.Bytes(), m.CreatedAt.Format(time.RFC3339), *dataDir, *dataDir)
	return nil
}

// paced reads from r no faster than rate bytes a second on average.
type paced struct {
	r     io.Reader
	rate  int
	began time.Time
	read  int64
}

func (p *paced) Read(b []byte) (int, error) {
	if len(b) > p.rate/8 {
		b = b[:p.rate/8] // an eighth of a second's worth at most
	}
	n, err := p.r.Read(b)
	p.read += int64(n)
	if due := time.Duration(float64(p.read) / float64(p.rate) * float64(time.Second)); due > time.Since(p.began) {
		time.Sleep(due - time.Since(p.began))
	}
	return n, err
}
