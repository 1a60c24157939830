// Package backup writes and reads a single node's backup: its data
// directory's files as one tar stream, followed by a manifest of every
// file's length and SHA-256. A reader checks each file against the
// manifest, so a stream cut short, reordered or altered is refused rather
// than restored. What goes in a backup, and at which moment, is the
// node's to choose (cmd/parley/node); this package only moves the bytes.
package backup

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Format is the version of the backup's layout that Write writes and
// Read reads.
const Format = 1

// ManifestName is the name of the last entry of every backup.
const ManifestName = "MANIFEST.json"

// maxManifestBytes bounds the manifest a reader accepts: a few hundred
// bytes a file, for well over a hundred thousand files.
const maxManifestBytes = 64 << 20

// File is a file to put in a backup.
type File struct {
	// Name is its path in the data directory, with '/' between parts.
	Name string
	// Size is how many bytes of Data the backup holds.
	Size int64
	// Data is read from 0 up to Size; when nil, the file at Path is,
	// opened only while it is written, so that a backup of many files
	// holds one descriptor at a time for them.
	Data io.ReaderAt
	Path string
}

// Manifest lists a backup's files; it is the backup's last entry.
type Manifest struct {
	Format    int       `json:"format"`
	CreatedAt time.Time `json:"createdAt"`
	Files     []Entry   `json:"files"`
}

// Entry is one file of a manifest.
type Entry struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Bytes is the sum of the files' sizes.
func (m Manifest) Bytes() int64 {
	var n int64
	for _, e := range m.Files {
		n += e.Size
	}
	return n
}

// Write writes files to w as a tar stream, then the manifest. A file that
// reads short fails the backup.
func Write(w io.Writer, files []File, createdAt time.Time) error {
	tw := tar.NewWriter(w)
	m := Manifest{Format: Format, CreatedAt: createdAt.UTC(), Files: make([]Entry, 0, len(files))}
	seen := make(map[string]bool, len(files))
	h := sha256.New()
	for _, f := range files {
		if err := checkName(f.Name); err != nil {
			return err
		}
		if seen[f.Name] {
			return fmt.Errorf("cannot back up %s twice", f.Name)
		}
		seen[f.Name] = true
		if err := tw.WriteHeader(header(f.Name, f.Size, createdAt)); err != nil {
			return err
		}
		h.Reset()
		n, err := copyFile(io.MultiWriter(tw, h), f)
		if err != nil {
			return fmt.Errorf("cannot back up %s: %w", f.Name, err)
		}
		if n != f.Size {
			return fmt.Errorf("cannot back up %s: read %d of its %d bytes", f.Name, n, f.Size)
		}
		m.Files = append(m.Files, Entry{Name: f.Name, Size: f.Size, SHA256: hex.EncodeToString(h.Sum(nil))})
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(header(ManifestName, int64(len(b)), createdAt)); err != nil {
		return err
	}
	if _, err := tw.Write(b); err != nil {
		return err
	}
	return tw.Close()
}

// copyFile copies f's Size bytes to w.
func copyFile(w io.Writer, f File) (int64, error) {
	if f.Data != nil {
		return io.Copy(w, io.NewSectionReader(f.Data, 0, f.Size))
	}
	file, err := os.Open(f.Path)
	if err != nil {
		return 0, err
	}
	defer file.Close()
	return io.Copy(w, io.NewSectionReader(file, 0, f.Size))
}

func header(name string, size int64, mod time.Time) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o600, ModTime: mod.UTC(), Format: tar.FormatPAX}
}

// checkName refuses a name that would leave the directory it is restored
// into, or that is not in its one spelling.
func checkName(name string) error {
	if name == "" || name == ManifestName || path.IsAbs(name) || path.Clean(name) != name ||
		name == ".." || strings.HasPrefix(name, "../") || strings.Contains(name, "\\") || strings.ContainsRune(name, 0) {
		return fmt.Errorf("%q cannot be a file of a backup", name)
	}
	return nil
}

// Read reads a backup from r and hands each file to put, in the order the
// backup holds them (nil put only checks). It returns the manifest once
// every file matched it: any error — a stream cut short, a file the
// manifest does not list or lists otherwise, an entry that is not a
// regular file — means the backup is not whole, whatever put was given.
func Read(r io.Reader, put func(name string, size int64, data io.Reader) error) (Manifest, error) {
	cr := &countingReader{r: r}
	tr := tar.NewReader(cr)
	type got struct {
		size int64
		sum  string
	}
	files := map[string]got{}
	var order []string
	h := sha256.New()
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			return Manifest{}, errors.New("the backup ends without its manifest: it was cut short")
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("cannot read the backup: %w", err)
		}
		if hd.Typeflag != tar.TypeReg {
			return Manifest{}, fmt.Errorf("the backup holds %s, which is not a regular file", hd.Name)
		}
		// A sparse file's holes are not in the stream: a few bytes of it
		// would stand for as many as its header claims. Write makes none.
		for k := range hd.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				return Manifest{}, fmt.Errorf("the backup holds %s as a sparse file, which no backup does", hd.Name)
			}
		}
		if hd.Name == ManifestName {
			if hd.Size > maxManifestBytes {
				return Manifest{}, fmt.Errorf("the backup's manifest is %d bytes, more than %d", hd.Size, maxManifestBytes)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return Manifest{}, fmt.Errorf("cannot read the backup's manifest: %w", err)
			}
			var m Manifest
			if err := json.Unmarshal(b, &m); err != nil {
				return Manifest{}, fmt.Errorf("cannot read the backup's manifest: %w", err)
			}
			if err := m.check(order, func(name string) (int64, string) { g := files[name]; return g.size, g.sum }); err != nil {
				return Manifest{}, err
			}
			// The tar ends with two zero blocks after the manifest's
			// padding; archive/tar takes a clean end of the stream for
			// the same, so the count tells a stream cut there.
			read := cr.n
			if _, err := tr.Next(); err != io.EOF {
				return Manifest{}, errors.New("the backup holds more after its manifest")
			}
			if cr.n-read < (512-hd.Size%512)%512+1024 {
				return Manifest{}, errors.New("the backup ends without the tar's end: it was cut short")
			}
			return m, nil
		}
		if err := checkName(hd.Name); err != nil {
			return Manifest{}, err
		}
		if _, dup := files[hd.Name]; dup {
			return Manifest{}, fmt.Errorf("the backup holds %s twice", hd.Name)
		}
		h.Reset()
		data := io.TeeReader(tr, h)
		if put != nil {
			if err := put(hd.Name, hd.Size, data); err != nil {
				return Manifest{}, err
			}
		}
		// What put left unread (or all of it, without put) is hashed too.
		if _, err := io.Copy(io.Discard, data); err != nil {
			return Manifest{}, fmt.Errorf("cannot read %s from the backup: %w", hd.Name, err)
		}
		files[hd.Name] = got{hd.Size, hex.EncodeToString(h.Sum(nil))}
		order = append(order, hd.Name)
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// check compares m with the files read, in their order.
func (m Manifest) check(order []string, read func(name string) (size int64, sum string)) error {
	if m.Format != Format {
		return fmt.Errorf("the backup's format is %d; this parley reads %d", m.Format, Format)
	}
	if len(m.Files) != len(order) {
		return fmt.Errorf("the backup holds %d files, its manifest lists %d", len(order), len(m.Files))
	}
	for i, e := range m.Files {
		if e.Name != order[i] {
			return fmt.Errorf("the backup's file %d is %s, its manifest says %s", i, order[i], e.Name)
		}
		size, sum := read(e.Name)
		if size != e.Size || sum != e.SHA256 {
			return fmt.Errorf("%s in the backup is not what its manifest says (%d bytes, SHA-256 %s; the manifest: %d bytes, %s)",
				e.Name, size, sum, e.Size, e.SHA256)
		}
	}
	return nil
}

// Staging is the directory in a data directory that a restore writes to
// before it moves the files into place; it is removed last, so a data
// directory that holds it is not whole.
const Staging = ".restoring"

// Restore reads a backup from r into dir, which must be empty or not
// exist. The files go to a directory inside dir first and move into place
// only once the whole backup matched its manifest, check (if not nil)
// accepted the manifest, and the files are on disk, so a failed restore
// leaves no data directory that looks whole; it removes what it wrote.
func Restore(r io.Reader, dir string, check func(Manifest) error) (Manifest, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Manifest{}, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return Manifest{}, err
	}
	if len(entries) > 0 {
		return Manifest{}, fmt.Errorf("cannot restore into %s: it is not empty", dir)
	}
	staging := filepath.Join(dir, Staging)
	if err := os.Mkdir(staging, 0o700); err != nil {
		return Manifest{}, err
	}
	m, err := Read(r, func(name string, size int64, data io.Reader) error {
		return writeFile(filepath.Join(staging, filepath.FromSlash(name)), size, data)
	})
	if err == nil && check != nil {
		err = check(m)
	}
	if err == nil {
		err = syncTree(staging)
	}
	if err == nil {
		err = moveUp(staging, dir)
	}
	if err != nil {
		// Nothing of it was in place: the directory was empty before.
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
		return Manifest{}, err
	}
	return m, nil
}

// writeFile writes size bytes of data to a new file at name.
func writeFile(name string, size int64, data io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(data, size))
	if err == nil && n != size {
		err = fmt.Errorf("%s: the backup holds %d of its %d bytes", name, n, size)
	}
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// syncTree syncs every directory under root, root included, so that the
// files written in them are found after a crash.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return syncDir(p)
	})
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// moveUp moves every entry of staging into dir, its parent, and removes
// staging.
func moveUp(staging, dir string) error {
	entries, err := os.ReadDir(staging)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(staging, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	if err := os.Remove(staging); err != nil {
		return err
	}
	return syncDir(dir)
}

// Dir lists the regular files under root for a backup, named prefix/ and
// their path under root, each at its length now. They are opened as they
// are written: the files must not change until then (a checkpoint's
// do not).
func Dir(root, prefix string) (files []File, err error) {
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		f, err := Open(p, path.Join(prefix, filepath.ToSlash(rel)))
		if err != nil {
			return err
		}
		files = append(files, f)
		return nil
	})
	return files, err
}

// Open lists the file at p for a backup, named name, at its length now.
// It is opened as it is written: it must not change until then.
func Open(p, name string) (File, error) {
	st, err := os.Stat(p)
	if err != nil {
		return File{}, err
	}
	if !st.Mode().IsRegular() {
		return File{}, fmt.Errorf("cannot back up %s: not a regular file", p)
	}
	return File{Name: name, Size: st.Size(), Path: p}, nil
}

// CloseAll closes the files' data that can be closed.
func CloseAll(files []File) {
	for _, f := range files {
		if c, ok := f.Data.(io.Closer); ok {
			c.Close()
		}
	}
}
