package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/parley-chat/parley/infra/backup"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/auth"
)

// backupScratch is the directory in the data dir that holds the store's
// checkpoint while a backup streams it; a backup that a crash cut short
// leaves it, and the next one removes it.
const backupScratch = ".backup"

// RestoredMarker names a file that every backup carries into the data
// directory it is restored into. The backup's log is older than the log
// the node went on writing: the msgids of the messages acknowledged after
// the backup was taken would be handed out again. So a node that finds
// the marker first moves to the next log epoch, as a repair of a lost log
// does (RepairLog: the read models apply the restored log, which then
// moves aside to log.restored-e<N>-<time>), and only then removes it.
const RestoredMarker = "restored-from-backup"

// The data dir's directories of the embedded store and the embedded log
// (by default); a backup names their files under the same.
const (
	storeDir = "store"
	logDir   = "log"
)

// CheckBackup refuses a backup that is whole but not a node's: every
// node's backup holds its store, its log and RestoredMarker.
func CheckBackup(m backup.Manifest) error {
	var store, log, marker bool
	for _, f := range m.Files {
		store = store || strings.HasPrefix(f.Name, storeDir+"/")
		log = log || strings.HasPrefix(f.Name, logDir+"/")
		marker = marker || f.Name == RestoredMarker
	}
	if !store || !log || !marker {
		return fmt.Errorf("it is not a Parley node's backup: it lacks its store, its log or %s", RestoredMarker)
	}
	return nil
}

// finishRestore checks a data directory before a node starts on it: it
// refuses one that a restore left half moved into place, and moves one
// restored from a backup to the next log epoch (RestoredMarker). A node
// that runs offline (a repair, or this move itself) leaves the marker.
func finishRestore(ctx context.Context, cfg Config) error {
	if _, err := os.Stat(filepath.Join(cfg.DataDir, backup.Staging)); err == nil {
		return fmt.Errorf("a restore into %s did not finish (%s is left): empty the directory and restore again", cfg.DataDir, backup.Staging)
	}
	marker := filepath.Join(cfg.DataDir, RestoredMarker)
	if _, err := os.Stat(marker); cfg.Offline || errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	// The restored log is read in its own epoch: the one the backup's
	// log-epoch file names, 1 without one. A higher --log-epoch is where
	// the node goes next, never how the old log is read (that would
	// renumber its messages).
	logEpoch, err := storedEpoch(cfg.DataDir)
	if err != nil {
		return err
	}
	want := cfg.Kafka.Epoch
	cfg.Kafka.Epoch = max(logEpoch, 1)
	rep, err := nextEpoch(ctx, cfg, "restored", want)
	if err != nil {
		return fmt.Errorf("cannot start on a data directory restored from a backup: %w", err)
	}
	if err := os.Remove(marker); err != nil {
		return err
	}
	if err := syncDir(cfg.DataDir); err != nil {
		return err
	}
	cfg.Logger.Info("restored from a backup: its log is applied and moved aside; new msgids begin a new log epoch, above every msgid handed out before",
		"moved", rep.Moved, "epoch", rep.Epoch)
	return nil
}

// canBackUp tells whether this node holds its own state: the embedded
// broker's log and the embedded store. A node on an external Kafka or on
// PostgreSQL and Redis is backed up by those systems' own tools.
func (n *Node) canBackUp() bool { return n.broker != nil && n.stores.embedded != nil }

// backup writes a backup of the node's data directory to w, taken at one
// moment while the node runs (docs/operations.md, Backups): the embedded
// store's checkpoint and the log's files, captured while the log appends
// nothing, and the token secret and the log epoch when the data dir holds
// them, and RestoredMarker. The store is thus never ahead of the log: a
// restored node starts as after a crash at that moment, resuming each
// read model from its progress, and every data key stored before its
// first message was appended is in the backup with that message.
func (n *Node) backup(_ context.Context, w io.Writer) (err error) {
	n.backups.Lock()
	defer n.backups.Unlock()
	if n.backupsClosed {
		return fmt.Errorf("the node is shutting down: %w", api.ErrUnavailable)
	}
	scratch := filepath.Join(n.cfg.DataDir, backupScratch)
	if err := os.RemoveAll(scratch); err != nil {
		return err
	}
	if err := os.Mkdir(scratch, 0o700); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(scratch)) }()
	checkpoint := filepath.Join(scratch, storeDir)
	began := time.Now()
	var (
		bytes int64
		pause time.Duration
	)
	defer func() { n.metrics.BackupDone(began, bytes, pause, err) }()
	// What the checkpoint copies inside the pause is the write-ahead log
	// of the memtables not yet flushed: flushed first, it is small.
	if err := n.stores.embedded.Flush(); err != nil {
		return err
	}
	var paused time.Time
	logFiles, err := n.broker.Snapshot(func() error {
		paused = time.Now()
		return n.stores.embedded.Checkpoint(checkpoint, pebble.WithFlushedWAL())
	})
	pause = time.Since(paused)
	if err != nil {
		return err
	}
	files := make([]backup.File, 0, len(logFiles))
	for _, f := range logFiles {
		files = append(files, backup.File{Name: path.Join(logDir, f.Name), Size: f.Size, Data: f.File})
	}
	defer func() { backup.CloseAll(files) }()
	store, err := backup.Dir(checkpoint, storeDir)
	if err != nil {
		return err
	}
	files = append(store, files...)
	for _, name := range []string{auth.SecretFile, epochFile} {
		f, err := backup.Open(filepath.Join(n.cfg.DataDir, name), name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	marker := fmt.Sprintf("restored from a backup taken at %s: the next start applies its log and moves to the next log epoch\n", began.UTC().Format(time.RFC3339Nano))
	files = append(files, backup.File{Name: RestoredMarker, Size: int64(len(marker)), Data: strings.NewReader(marker)})
	for _, f := range files {
		bytes += f.Size
	}
	n.log.Info("backup taken; streaming it", "files", len(files), "bytes", bytes, "log_paused", pause.Round(time.Millisecond))
	if err := backup.Write(w, files, began); err != nil {
		return err
	}
	n.log.Info("backup sent", "bytes", bytes, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// closeBackups waits for a backup under way to end (the HTTP server's
// close has cut its stream) and refuses any later one: the store and the
// broker close next.
func (n *Node) closeBackups() {
	n.backups.Lock()
	n.backupsClosed = true
	n.backups.Unlock()
}

// removeBackupScratch removes what a backup that a crash cut short left:
// the checkpoint's hard links hold on to store files the store no longer
// needs.
func removeBackupScratch(dataDir string) error {
	return os.RemoveAll(filepath.Join(dataDir, backupScratch))
}
