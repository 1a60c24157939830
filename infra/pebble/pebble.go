// Package pebble opens the embedded store of a single node: one Pebble
// database under the data directory that holds every durable read model
// (history, groups, the conversation index) with their progress, so that a
// start reads only the log's tail and memory does not grow with history.
package pebble

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Config tunes the store.
type Config struct {
	// Dir is the database's directory. Required.
	Dir string
	// CacheBytes is the block cache: what reads keep in memory, taken as
	// it fills. It must hold the bloom filters and indexes of the tables
	// (about 3 bytes a message): when it does not, every lookup of a
	// missing key — a new client message id, say — reads them from disk
	// again, ten times slower. Default DefaultCacheBytes, at least
	// MinCacheBytes.
	CacheBytes int64
	// MemTableBytes is one memtable's size; two may exist at a time.
	// Larger memtables flush less often, so fewer small tables wait in
	// level 0 for each point read to check. Default 32 MiB.
	MemTableBytes uint64
	// Logger receives Pebble's own messages. Default slog.Default().
	Logger *slog.Logger
	// InMemory keeps the store in memory only, for tests; Dir is ignored.
	InMemory bool
	// Stalls, when set, counts the store's write stalls.
	Stalls *Stalls
}

// Stalls counts write stalls: Pebble holds every write back while its
// memtables wait for a flush, or level 0 has too many sublevels, that is
// while compactions fall behind the writes. A stall holds up every read
// model of the single node at once.
type Stalls struct {
	mu    sync.Mutex
	count int64
	total time.Duration // of the stalls that ended
	began time.Time     // of the stall under way; zero if none
}

// Count is the number of stalls so far, the one under way included.
func (s *Stalls) Count() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Duration is how long writes have stalled so far, the stall under way
// included. It never goes down.
func (s *Stalls) Duration() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.total
	if !s.began.IsZero() {
		d += time.Since(s.began)
	}
	return d
}

func (s *Stalls) begin(log *slog.Logger, reason string) {
	s.mu.Lock()
	s.count++
	s.began = time.Now()
	s.mu.Unlock()
	log.Debug("writes stall", "reason", reason)
}

func (s *Stalls) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.began.IsZero() {
		s.total += time.Since(s.began)
		s.began = time.Time{}
	}
}

// DefaultCacheBytes and MinCacheBytes bound Config.CacheBytes.
const (
	DefaultCacheBytes = 128 << 20
	MinCacheBytes     = 8 << 20
)

func (c *Config) setDefaults() {
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.MemTableBytes == 0 {
		c.MemTableBytes = 32 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Open opens (creating it if need be) the store in cfg.Dir.
func Open(cfg Config) (*pebble.DB, error) {
	cfg.setDefaults()
	if cfg.Dir == "" && !cfg.InMemory {
		return nil, fmt.Errorf("cannot open the embedded store: no directory")
	}
	cache := pebble.NewCache(cfg.CacheBytes)
	defer cache.Unref()
	var fs vfs.FS
	if cfg.InMemory {
		fs, cfg.Dir = vfs.NewMem(), ""
	}
	log := cfg.Logger.With("component", "embedded-store")
	opts := &pebble.Options{
		FS:                 fs,
		Cache:              cache,
		MemTableSize:       cfg.MemTableBytes,
		Logger:             logger{log},
		MaxOpenFiles:       1000,
		BytesPerSync:       1 << 20,
		FormatMajorVersion: pebble.FormatNewest,
	}
	// Bloom filters on every level: the store checks that a message or
	// a client message id is not taken yet before it writes one, and
	// without a filter every such miss reads a block of each level.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		opts.Levels[i].FilterType = pebble.TableFilter
	}
	if st := cfg.Stalls; st != nil {
		opts.EventListener = &pebble.EventListener{
			WriteStallBegin: func(i pebble.WriteStallBeginInfo) { st.begin(log, i.Reason) },
			WriteStallEnd:   st.end,
		}
	}
	db, err := pebble.Open(cfg.Dir, opts)
	if err != nil {
		return nil, fmt.Errorf("cannot open the embedded store in %s: %w", cfg.Dir, err)
	}
	return db, nil
}

// logger hands Pebble's messages to slog: its informational lines as debug.
type logger struct{ log *slog.Logger }

func (l logger) Infof(format string, args ...any)  { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l logger) Errorf(format string, args ...any) { l.log.Error(fmt.Sprintf(format, args...)) }
func (l logger) Fatalf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...))
	panic(fmt.Sprintf(format, args...))
}
