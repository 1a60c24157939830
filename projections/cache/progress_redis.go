package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/parley-chat/parley/projections"
	"github.com/redis/go-redis/v9"
)

// progressKeyPart names the hash of the cache's progress under the prefix:
// field = partition, value = the next offset to apply.
const progressKeyPart = "progress:cache"

// ErrProgressClosed is returned by a RedisProgress after Close.
var ErrProgressClosed = errors.New("cache progress is closed")

// RedisProgressConfig configures RedisProgress.
type RedisProgressConfig struct {
	// Prefix starts the key. Default "parley:"; use the cache's prefix.
	Prefix string
	// FlushInterval is how long an Advance may wait before it is written to
	// Redis; advances within it share one write. Default 2ms.
	FlushInterval time.Duration
	// PollInterval is how often a waiter that local progress cannot satisfy
	// reads Redis again. All waiters share one read. Default 5ms.
	PollInterval time.Duration
	// RefreshInterval is how often every partition this process has
	// advanced is written again, whether changed or not, and the whole hash
	// read back for Next. Rewriting restores progress after the hash was
	// lost (FLUSHALL, eviction). Default 1s.
	RefreshInterval time.Duration
	// Timeout bounds each background Redis call. Default 2s.
	Timeout time.Duration
	// Logger reports failed background writes. Default: discard.
	Logger *slog.Logger
}

func (c *RedisProgressConfig) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = "parley:"
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 2 * time.Millisecond
	}
	if c.PollInterval == 0 {
		c.PollInterval = 5 * time.Millisecond
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Validate reports every problem of c at once.
func (c RedisProgressConfig) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"flush interval", c.FlushInterval}, {"poll interval", c.PollInterval}, {"refresh interval", c.RefreshInterval}, {"timeout", c.Timeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("redis cache progress: %s %v must be positive", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}

// RedisProgress is the cache's projections.Tracker in Redis, so that a
// gateway in one process can wait for a cache projector in another. Advance
// only updates memory; an owned goroutine writes changed partitions every
// FlushInterval with "set if greater", so the stored progress never moves
// backwards, not even with two projectors on one partition during a
// rebalance. A waiter returns at once when this process's own progress
// suffices, and otherwise polls Redis.
//
// The hash lives beside the cache's keys and goes with them: after a
// FLUSHALL it reads 0 until a projector writes it again, and the cache reads
// as not covered, so sync falls back to the store. Close stops the goroutine.
type RedisProgress struct {
	client redis.UniversalClient
	key    string
	cfg    RedisProgressConfig

	mu      sync.Mutex
	local   map[int32]int64 // next offset, as advanced in this process
	read    map[int32]int64 // next offset, as last read from Redis
	dirty   map[int32]struct{}
	waiters map[int32][]progressWaiter
	closed  bool

	flushKick chan struct{}
	pollKick  chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

type progressWaiter struct {
	end int64
	ch  chan struct{}
}

var _ projections.Tracker = (*RedisProgress)(nil)

// NewRedisProgress starts the tracker and its background writer. The
// caller owns the client, and must Close the tracker before closing it.
func NewRedisProgress(client redis.UniversalClient, cfg RedisProgressConfig) (*RedisProgress, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &RedisProgress{
		client: client, key: cfg.Prefix + progressKeyPart, cfg: cfg,
		local: map[int32]int64{}, read: map[int32]int64{}, dirty: map[int32]struct{}{},
		waiters:   map[int32][]progressWaiter{},
		flushKick: make(chan struct{}, 1), pollKick: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go p.run()
	return p, nil
}

// setIfGreaterScript writes each (partition, next) pair of ARGV unless the
// hash already holds a greater or equal value. Offsets are below 2^48 and
// compare exactly as Lua numbers.
var setIfGreaterScript = redis.NewScript(`
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if not cur or tonumber(cur) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 0
`)

// Advance implements projections.Tracker.
func (p *RedisProgress) Advance(partition int32, offset int64) {
	p.mu.Lock()
	if offset+1 <= p.local[partition] {
		p.mu.Unlock()
		return
	}
	p.local[partition] = offset + 1
	p.dirty[partition] = struct{}{}
	p.wakeLocked(partition, offset+1)
	p.mu.Unlock()
	kick(p.flushKick)
}

// Next implements projections.Tracker: the greater of this process's
// progress and the last one read from Redis. It does not call Redis.
func (p *RedisProgress) Next(partition int32) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.local[partition], p.read[partition])
}

// WaitFor implements projections.Tracker.
func (p *RedisProgress) WaitFor(ctx context.Context, partition int32, end int64) error {
	p.mu.Lock()
	if p.local[partition] >= end {
		p.mu.Unlock()
		return nil
	}
	if p.closed {
		p.mu.Unlock()
		return fmt.Errorf("cannot wait for partition %d to reach offset %d: %w", partition, end, ErrProgressClosed)
	}
	w := progressWaiter{end: end, ch: make(chan struct{})}
	p.waiters[partition] = append(p.waiters[partition], w)
	p.mu.Unlock()
	kick(p.pollKick)
	select {
	case <-w.ch:
		return nil
	case <-p.done:
		return fmt.Errorf("cannot wait for partition %d to reach offset %d: %w", partition, end, ErrProgressClosed)
	case <-ctx.Done():
		p.mu.Lock()
		p.removeWaiterLocked(partition, w.ch)
		p.mu.Unlock()
		return fmt.Errorf("cannot wait for partition %d to reach offset %d: %w", partition, end, ctx.Err())
	}
}

// WaitForAll implements projections.Tracker.
func (p *RedisProgress) WaitForAll(ctx context.Context, ends map[int32]int64) error {
	for part, end := range ends {
		if err := p.WaitFor(ctx, part, end); err != nil {
			return err
		}
	}
	return nil
}

// Close writes what is not written yet and stops the background goroutine;
// waiters return ErrProgressClosed. It is idempotent and returns the error
// of the last write, if any.
func (p *RedisProgress) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		close(p.stop)
		<-p.done
	})
	return p.closeErr
}

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// wakeLocked releases the waiters of partition that next satisfies.
func (p *RedisProgress) wakeLocked(partition int32, next int64) {
	ws := p.waiters[partition]
	if len(ws) == 0 {
		return
	}
	kept := ws[:0]
	for _, w := range ws {
		if w.end <= next {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	if len(kept) == 0 {
		delete(p.waiters, partition)
		return
	}
	p.waiters[partition] = kept
}

func (p *RedisProgress) removeWaiterLocked(partition int32, ch chan struct{}) {
	ws := p.waiters[partition]
	for i := range ws {
		if ws[i].ch == ch {
			p.waiters[partition] = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(p.waiters[partition]) == 0 {
		delete(p.waiters, partition)
	}
}

// run is the background goroutine: it writes advances, polls for waiters
// and refreshes, until Close.
func (p *RedisProgress) run() {
	defer close(p.done)
	flushTimer := time.NewTimer(time.Hour)
	flushTimer.Stop()
	pollTimer := time.NewTimer(time.Hour)
	pollTimer.Stop()
	refresh := time.NewTicker(p.cfg.RefreshInterval)
	defer refresh.Stop()
	flushArmed, pollArmed := false, false

	p.refresh()
	for {
		select {
		case <-p.stop:
			flushTimer.Stop()
			pollTimer.Stop()
			p.closeErr = p.flush(false)
			return
		case <-p.flushKick:
			if !flushArmed {
				flushTimer.Reset(p.cfg.FlushInterval)
				flushArmed = true
			}
		case <-flushTimer.C:
			flushArmed = false
			if p.flush(false) != nil {
				// Try again after an interval; the partitions stay dirty.
				flushTimer.Reset(p.cfg.FlushInterval)
				flushArmed = true
			}
		case <-p.pollKick:
			// A new waiter reads Redis at once, then every PollInterval.
			if p.poll() && !pollArmed {
				pollTimer.Reset(p.cfg.PollInterval)
				pollArmed = true
			}
		case <-pollTimer.C:
			pollArmed = false
			if p.poll() {
				pollTimer.Reset(p.cfg.PollInterval)
				pollArmed = true
			}
		case <-refresh.C:
			p.refresh()
		}
	}
}

// flush writes the dirty partitions, or with all every partition this
// process advanced. On failure the partitions are marked dirty again.
func (p *RedisProgress) flush(all bool) error {
	p.mu.Lock()
	parts := make([]int32, 0, len(p.dirty))
	if all {
		for part := range p.local {
			parts = append(parts, part)
		}
	} else {
		for part := range p.dirty {
			parts = append(parts, part)
		}
	}
	clear(p.dirty)
	args := make([]any, 0, 2*len(parts))
	for _, part := range parts {
		args = append(args, int64(part), p.local[part])
	}
	p.mu.Unlock()
	if len(parts) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Timeout)
	defer cancel()
	if err := setIfGreaterScript.Run(ctx, p.client, []string{p.key}, args...).Err(); err != nil {
		p.mu.Lock()
		for _, part := range parts {
			p.dirty[part] = struct{}{}
		}
		p.mu.Unlock()
		p.cfg.Logger.Warn("cannot write cache progress to redis; will retry", "key", p.key, "err", err)
		return fmt.Errorf("cannot write cache progress: %w", err)
	}
	return nil
}

// poll reads the partitions that have waiters and wakes those it can. It
// reports whether waiters remain.
func (p *RedisProgress) poll() bool {
	p.mu.Lock()
	fields := make([]string, 0, len(p.waiters))
	parts := make([]int32, 0, len(p.waiters))
	for part := range p.waiters {
		fields = append(fields, strconv.Itoa(int(part)))
		parts = append(parts, part)
	}
	p.mu.Unlock()
	if len(parts) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Timeout)
	defer cancel()
	vals, err := p.client.HMGet(ctx, p.key, fields...).Result()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.cfg.Logger.Debug("cannot read cache progress from redis", "key", p.key, "err", err)
		return len(p.waiters) > 0
	}
	for i, part := range parts {
		next := parseProgress(vals[i])
		p.read[part] = next
		p.wakeLocked(part, next)
	}
	return len(p.waiters) > 0
}

// refresh writes every partition this process advanced and reads the whole
// hash back.
func (p *RedisProgress) refresh() {
	_ = p.flush(true)
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Timeout)
	defer cancel()
	all, err := p.client.HGetAll(ctx, p.key).Result()
	if err != nil {
		p.cfg.Logger.Debug("cannot read cache progress from redis", "key", p.key, "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.read)
	for field, v := range all {
		part, err := strconv.ParseInt(field, 10, 32)
		if err != nil {
			continue
		}
		next := parseProgress(v)
		p.read[int32(part)] = next
		p.wakeLocked(int32(part), next)
	}
}

// parseProgress reads a stored value; a missing or malformed one is 0,
// which proves nothing.
func parseProgress(v any) int64 {
	s, ok := v.(string)
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}
