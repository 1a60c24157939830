package kfake

import (
	"errors"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
)

// [parley] Snapshots of the data directory while the cluster runs. Every
// write of the cluster's files happens in its goroutine, a request at a
// time, and every file is either appended to, replaced by a rename, or
// removed (a write that fails is cut back to where it began, within the
// same request). So the files as they stand between two requests are what
// a crash at that moment would leave, and an open handle with the length
// of its file then still reads exactly that later: appends go past the
// length, and a rename or a removal leaves the open file as it was.

// ErrNotPersisted is returned by a snapshot of a cluster that keeps its
// state in memory or in an injected filesystem.
var ErrNotPersisted = errors.New("kfake: the cluster does not keep its state in a directory")

// SnapshotFile is one file of a snapshot.
type SnapshotFile struct {
	// Name is the file's path in the data directory, with '/' between
	// its parts.
	Name string
	// File reads the file as it was at the snapshot, up to Size bytes.
	// The caller closes it.
	File *os.File
	// Size is the file's length at the snapshot.
	Size int64
}

// Snapshot runs during in the cluster's goroutine between two requests,
// and then, still before the next request, opens every file of the data
// directory: nothing is appended, trimmed or compacted meanwhile, and no
// append is acknowledged, so whatever during captures of the appends'
// effects elsewhere is at least as old as the log the files hold. It
// returns the files with their lengths then; reading each up to its Size
// gives the directory as a crash at that moment would have left it. Files
// whose names end in ".tmp" (a rename that had not happened) are left out.
// The caller closes every file, also when it does not read them.
func (c *Cluster) Snapshot(during func() error) ([]SnapshotFile, error) {
	if !c.persist() || c.cfg.injectFS != nil {
		return nil, ErrNotPersisted
	}
	var (
		files []SnapshotFile
		err   error
	)
	if !c.tryAdmin(func() {
		if err = during(); err == nil {
			files, err = openAll(c.cfg.dataDir)
		}
	}) {
		return nil, ErrClosed
	}
	return files, err
}

// openAll opens every regular file under dir.
func openAll(dir string) (files []SnapshotFile, err error) {
	defer func() {
		if err != nil {
			for _, f := range files {
				f.File.Close()
			}
			files = nil
		}
	}()
	err = filepath.WalkDir(dir, func(path string, d iofs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.HasSuffix(d.Name(), ".tmp") {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		files = append(files, SnapshotFile{Name: filepath.ToSlash(rel), File: f, Size: st.Size()})
		return nil
	})
	return files, err
}
