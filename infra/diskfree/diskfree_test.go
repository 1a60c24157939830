package diskfree

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// fakeDisks answers the free space of each directory from a map.
type fakeDisks struct {
	mu   sync.Mutex
	free map[string]uint64
}

func (f *fakeDisks) set(dir string, n uint64) { f.mu.Lock(); f.free[dir] = n; f.mu.Unlock() }

func (f *fakeDisks) read(dir string) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.free[dir]
	if !ok {
		return 0, errors.New("no such directory")
	}
	return n, nil
}

// The guard fails once the least free space under any of its directories
// is below the floor, passes again once there is room, and logs each
// crossing once.
func TestGuardFollowsTheLeastFreeDirectory(t *testing.T) {
	disks := &fakeDisks{free: map[string]uint64{"log": 1000, "store": 500}}
	var out bytes.Buffer
	g := New(Config{Dirs: []string{"log", "store"}, Floor: 100, Logger: slog.New(slog.NewTextHandler(&out, nil)), free: disks.read})
	if err := g.Err(); err != nil || g.Free() != 500 {
		t.Fatalf("room everywhere: %v, free %d", err, g.Free())
	}
	disks.set("store", 99)
	g.Look()
	g.Look()
	if err := g.Err(); !errors.Is(err, ErrLow) || !strings.Contains(err.Error(), "store") || g.Free() != 99 {
		t.Fatalf("the store's disk below the floor: %v, free %d", err, g.Free())
	}
	disks.set("store", 100)
	g.Look()
	if err := g.Err(); err != nil {
		t.Fatalf("at the floor: %v", err)
	}
	if n := strings.Count(out.String(), "nearly full"); n != 1 {
		t.Errorf("logged the low disk %d times, want once:\n%s", n, out.String())
	}
	if n := strings.Count(out.String(), "room again"); n != 1 {
		t.Errorf("logged the room back %d times, want once:\n%s", n, out.String())
	}
}

// A directory whose free space cannot be read holds nothing back (the
// guard says so once); the others still count.
func TestGuardIgnoresWhatItCannotRead(t *testing.T) {
	disks := &fakeDisks{free: map[string]uint64{"store": 50}}
	var out bytes.Buffer
	g := New(Config{Dirs: []string{"gone", "store"}, Floor: 10, Logger: slog.New(slog.NewTextHandler(&out, nil)), free: disks.read})
	if err := g.Err(); err != nil {
		t.Fatalf("one unreadable directory: %v", err)
	}
	disks.set("store", 5)
	g.Look()
	if !errors.Is(g.Err(), ErrLow) {
		t.Fatalf("the readable one below the floor: %v", g.Err())
	}
	if n := strings.Count(out.String(), "not known"); n != 1 {
		t.Errorf("logged the unreadable directory %d times, want once:\n%s", n, out.String())
	}
	only := New(Config{Dirs: []string{"gone"}, Floor: 10, Logger: slog.New(slog.NewTextHandler(&out, nil)), free: disks.read})
	if err := only.Err(); err != nil {
		t.Errorf("nothing readable: %v, want no hold", err)
	}
	// A guard whose directories all stop answering keeps what it found.
	disks.set("gone", 1)
	only.Look()
	disks.mu.Lock()
	delete(disks.free, "gone")
	disks.mu.Unlock()
	only.Look()
	if !errors.Is(only.Err(), ErrLow) || only.Free() != 1 {
		t.Errorf("after its only directory stopped answering: %v, free %d; want the low disk it last saw", only.Err(), only.Free())
	}
}

// The file system's own answer for a directory that exists.
func TestFreeReadsTheFileSystem(t *testing.T) {
	n, err := free(t.TempDir())
	if err != nil {
		t.Skipf("not supported here: %v", err)
	}
	if n == 0 {
		t.Errorf("no free space under a temporary directory")
	}
}
