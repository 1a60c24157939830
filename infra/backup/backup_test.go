package backup_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/infra/backup"
)

// files are a backup's files: a nested path, an empty file and one larger
// than a tar block.
func files() map[string]string {
	return map[string]string{
		"store/000002.log":              "the store's write-ahead log",
		"log/partitions/p-0/0.dat":      strings.Repeat("batch", 300),
		"log/groups.log":                "",
		"token.secret":                  "0123456789abcdef",
		"log/partitions/p-0/00000.json": `{"x":1}`,
	}
}

func write(t testing.TB, fs map[string]string) []byte {
	t.Helper()
	var list []backup.File
	for _, name := range []string{"store/000002.log", "log/partitions/p-0/0.dat", "log/groups.log", "token.secret", "log/partitions/p-0/00000.json"} {
		if body, ok := fs[name]; ok {
			list = append(list, backup.File{Name: name, Size: int64(len(body)), Data: strings.NewReader(body)})
		}
	}
	var buf bytes.Buffer
	if err := backup.Write(&buf, list, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRestoreWhatWasWritten(t *testing.T) {
	b := write(t, files())
	dir := filepath.Join(t.TempDir(), "data")
	m, err := backup.Restore(bytes.NewReader(b), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != len(files()) || m.Format != backup.Format || !m.CreatedAt.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("manifest %+v", m)
	}
	var total int64
	for name, body := range files() {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil || string(got) != body {
			t.Errorf("%s: %q, %v", name, got, err)
		}
		total += int64(len(body))
		st, _ := os.Stat(filepath.Join(dir, filepath.FromSlash(name)))
		if st != nil && st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", name, st.Mode())
		}
	}
	if m.Bytes() != total {
		t.Errorf("manifest bytes %d, want %d", m.Bytes(), total)
	}
	if _, err := os.Stat(filepath.Join(dir, ".restoring")); !os.IsNotExist(err) {
		t.Errorf("the staging directory is left: %v", err)
	}
	if _, err := backup.Restore(bytes.NewReader(b), dir, nil); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("a restore over a data directory: %v", err)
	}
	// A whole backup that check refuses is not restored.
	other := filepath.Join(t.TempDir(), "other")
	refuse := func(backup.Manifest) error { return errors.New("not a node's backup") }
	if _, err := backup.Restore(bytes.NewReader(b), other, refuse); err == nil || !strings.Contains(err.Error(), "not a node's") {
		t.Fatalf("a restore that check refuses: %v", err)
	}
	if left, _ := os.ReadDir(other); len(left) != 0 {
		t.Fatalf("a refused restore left %v", left)
	}
}

// A backup cut anywhere, or with any byte changed, is refused, and the
// restore leaves the directory empty.
func TestRestoreRefusesWhatIsNotWhole(t *testing.T) {
	b := write(t, files())
	check := func(t *testing.T, what string, broken []byte) {
		t.Helper()
		dir := t.TempDir()
		if _, err := backup.Restore(bytes.NewReader(broken), dir, nil); err == nil {
			t.Fatalf("%s: restored (%d of %d bytes)", what, len(broken), len(b))
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Fatalf("%s: left %v", what, left)
		}
	}
	// Every cut, the tar's closing blocks included, is refused.
	for cut := 0; cut < len(b); cut += 97 {
		check(t, "cut", b[:cut])
	}
	for cut := len(b) - 1100; cut < len(b); cut++ {
		check(t, "cut", b[:cut])
	}
	// A byte changed in any file's data, or in the manifest's.
	for name, body := range files() {
		if body == "" {
			continue
		}
		at := bytes.Index(b, []byte(body))
		broken := bytes.Clone(b)
		broken[at+len(body)/2] ^= 0x20
		check(t, "flipped in "+name, broken)
	}
	at := bytes.Index(b, []byte(`"sha256"`))
	broken := bytes.Clone(b)
	broken[at+12] ^= 0x01
	check(t, "flipped in the manifest", broken)
}

func TestReadRefusesForeignEntries(t *testing.T) {
	good := write(t, files())
	m, err := backup.Read(bytes.NewReader(good), nil)
	if err != nil {
		t.Fatal(err)
	}
	manifest := func() []byte {
		var buf bytes.Buffer
		if _, err := backup.Read(bytes.NewReader(good), nil); err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(bytes.NewReader(good))
		for {
			h, err := tr.Next()
			if err != nil {
				t.Fatal(err)
			}
			if h.Name == backup.ManifestName {
				buf.ReadFrom(tr)
				return buf.Bytes()
			}
		}
	}()
	build := func(entries ...*tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range entries {
			body := make([]byte, h.Size)
			if h.Name == backup.ManifestName {
				body = manifest
				h.Size = int64(len(body))
			}
			tw.WriteHeader(h)
			tw.Write(body)
		}
		tw.Close()
		return buf.Bytes()
	}
	for name, b := range map[string][]byte{
		"escaping path": build(&tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Size: 1, Mode: 0o600}),
		"absolute path": build(&tar.Header{Name: "/etc/evil", Typeflag: tar.TypeReg, Size: 1, Mode: 0o600}),
		"symlink":       build(&tar.Header{Name: "store/x", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd", Mode: 0o600}),
		"no manifest":   build(&tar.Header{Name: "token.secret", Typeflag: tar.TypeReg, Size: 16, Mode: 0o600}),
		"files missing": build(&tar.Header{Name: backup.ManifestName, Typeflag: tar.TypeReg, Mode: 0o600}),
		"empty":         nil,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := backup.Restore(bytes.NewReader(b), dir, nil); err == nil {
				t.Fatal("restored")
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Fatalf("left %v", left)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "evil")); err == nil {
				t.Fatal("wrote outside the directory")
			}
		})
	}
	if len(m.Files) != len(files()) {
		t.Fatalf("manifest lists %d files", len(m.Files))
	}
}

func TestWriteRefusesBadNames(t *testing.T) {
	for _, name := range []string{"", "../x", "/x", "a/../b", "a//b", "./a", backup.ManifestName, `a\b`} {
		var buf bytes.Buffer
		err := backup.Write(&buf, []backup.File{{Name: name, Size: 1, Data: strings.NewReader("x")}}, time.Now())
		if err == nil {
			t.Errorf("%q: written", name)
		}
	}
	var buf bytes.Buffer
	short := []backup.File{{Name: "a", Size: 10, Data: strings.NewReader("abc")}}
	if err := backup.Write(&buf, short, time.Now()); err == nil {
		t.Error("a file shorter than its size was written")
	}
}

func TestDir(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "a", "b"), 0o700)
	os.WriteFile(filepath.Join(root, "a", "b", "f"), []byte("hello"), 0o600)
	os.WriteFile(filepath.Join(root, "g"), nil, 0o600)
	fs, err := backup.Dir(root, "store")
	if err != nil {
		t.Fatal(err)
	}
	defer backup.CloseAll(fs)
	var got []string
	for _, f := range fs {
		got = append(got, f.Name)
	}
	if strings.Join(got, ",") != "store/a/b/f,store/g" || fs[0].Size != 5 {
		t.Fatalf("got %v", fs)
	}
	// Listed files are read when written, up to their size then.
	os.WriteFile(filepath.Join(root, "a", "b", "f"), []byte("hello, again"), 0o600)
	var buf bytes.Buffer
	if err := backup.Write(&buf, fs, time.Now()); err != nil {
		t.Fatal(err)
	}
	var f []byte
	if _, err := backup.Read(&buf, func(name string, _ int64, r io.Reader) error {
		if name == "store/a/b/f" {
			f, _ = io.ReadAll(r)
		}
		return nil
	}); err != nil || string(f) != "hello" {
		t.Fatalf("read %q, %v", f, err)
	}
}

// A sparse entry's few bytes stand for as many as its header claims (a
// GNU tar --sparse --format=pax file): refused before anything is handed
// on, where archive/tar would read a gibibyte of holes out of 2 KiB.
func TestReadRefusesSparseFiles(t *testing.T) {
	record := func(k, v string) string {
		s := " " + k + "=" + v + "\n"
		for n := len(s); ; {
			r := fmt.Sprintf("%d%s", n, s)
			if len(r) == n {
				return r
			}
			n = len(r)
		}
	}
	pad := func(b []byte) []byte { return append(b, make([]byte, (512-len(b)%512)%512)...) }
	header := func(name string, typ byte, size int) []byte {
		b := make([]byte, 512)
		copy(b, name)
		for off, v := range map[int]string{100: "0000600\x00", 108: "0000000\x00", 116: "0000000\x00", 124: fmt.Sprintf("%011o\x00", size), 136: "00000000000\x00", 257: "ustar\x0000", 148: "        "} {
			copy(b[off:], v)
		}
		b[156] = typ
		sum := 0
		for _, c := range b {
			sum += int(c)
		}
		copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
		return b
	}
	pax := record("GNU.sparse.major", "1") + record("GNU.sparse.minor", "0") + record("GNU.sparse.name", "store/x") + record("GNU.sparse.realsize", "1073741824")
	data := append(pad([]byte("1\n1073741823\n1\n")), 'z')
	var b []byte
	b = append(b, header("PaxHeaders/x", tar.TypeXHeader, len(pax))...)
	b = append(b, pad([]byte(pax))...)
	b = append(b, header("GNUSparseFile.0/x", tar.TypeReg, len(data))...)
	b = append(b, pad(data)...)
	b = append(b, make([]byte, 1024)...)
	called := false
	if _, err := backup.Read(bytes.NewReader(b), func(string, int64, io.Reader) error { called = true; return nil }); err == nil || !strings.Contains(err.Error(), "sparse") || called {
		t.Fatalf("a sparse entry: %v, handed on %v", err, called)
	}
}

// FuzzRead feeds Read what a damaged or hostile backup file may hold: it
// must refuse or accept without panicking, and accept only what its
// manifest lists.
func FuzzRead(f *testing.F) {
	f.Add(write(f, files()))
	f.Add(write(f, map[string]string{"token.secret": "x"}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var names []string
		m, err := backup.Read(bytes.NewReader(b), func(name string, size int64, _ io.Reader) error {
			names = append(names, name)
			return nil
		})
		if err != nil {
			return
		}
		if len(m.Files) != len(names) {
			t.Fatalf("accepted %d files, the manifest lists %d", len(names), len(m.Files))
		}
		for i, e := range m.Files {
			if e.Name != names[i] {
				t.Fatalf("accepted %s as %s", names[i], e.Name)
			}
		}
	})
}
