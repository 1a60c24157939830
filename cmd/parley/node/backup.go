package node

import (
	"context"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/parley-chat/parley/infra/backup"
	"github.com/parley-chat/parley/transport/auth"
)

// backupScratch is the directory in the data dir that holds the store's
// checkpoint while a backup streams it; a backup that a crash cut short
// leaves it, and the next one removes it.
const backupScratch = ".backup"

// canBackUp tells whether this node holds its own state: the embedded
// broker's log and the embedded store. A node on an external Kafka or on
// PostgreSQL and Redis is backed up by those systems' own tools.
func (n *Node) canBackUp() bool { return n.broker != nil && n.stores.embedded != nil }

// backup writes a backup of the node's data directory to w, taken at one
// moment while the node runs (docs/operations.md, Backups): the embedded
// store's checkpoint and the log's files, captured while the log appends
// nothing, and the token secret and the log epoch when the data dir holds
// them. The store is thus never ahead of the log: a restored node starts
// as after a crash at that moment, resuming each read model from its
// progress, and every data key stored before its first message was
// appended is in the backup with that message.
func (n *Node) backup(_ context.Context, w io.Writer) (err error) {
	scratch := filepath.Join(n.cfg.DataDir, backupScratch)
	if err := os.RemoveAll(scratch); err != nil {
		return err
	}
	if err := os.Mkdir(scratch, 0o700); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(scratch)) }()
	checkpoint := filepath.Join(scratch, "store")
	began := time.Now()
	var paused time.Duration
	logFiles, err := n.broker.Snapshot(func() error {
		defer func() { paused = time.Since(began) }()
		return n.stores.embedded.Checkpoint(checkpoint, pebble.WithFlushedWAL())
	})
	if err != nil {
		return err
	}
	files := make([]backup.File, 0, len(logFiles))
	for _, f := range logFiles {
		files = append(files, backup.File{Name: path.Join("log", f.Name), Size: f.Size, Data: f.File})
	}
	defer func() { backup.CloseAll(files) }()
	store, err := backup.Dir(checkpoint, "store")
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
	var bytes int64
	for _, f := range files {
		bytes += f.Size
	}
	n.log.Info("backup taken; streaming it", "files", len(files), "bytes", bytes, "appends_paused", paused.Round(time.Millisecond))
	if err := backup.Write(w, files, began); err != nil {
		return err
	}
	n.log.Info("backup sent", "bytes", bytes, "took", time.Since(began).Round(time.Millisecond))
	return nil
}
