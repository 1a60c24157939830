package cache_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/parley-chat/parley/infra/redis/redistest"
	"github.com/parley-chat/parley/projections/cache"
	"github.com/redis/go-redis/v9"
)

func newProgress(t *testing.T, client *redis.Client, prefix string, cfg cache.RedisProgressConfig) *cache.RedisProgress {
	t.Helper()
	cfg.Prefix = prefix
	p, err := cache.NewRedisProgress(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func waitAsync(ctx context.Context, p *cache.RedisProgress, part int32, end int64) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- p.WaitFor(ctx, part, end) }()
	return ch
}

// notDone fails if ch delivers within a grace period: it cannot prove that
// a waiter would never return, only that it has not yet.
func notDone(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned early: %v", what, err)
	case <-time.After(50 * time.Millisecond):
	}
}

func done(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

func stored(t *testing.T, client *redis.Client, prefix, field string) string {
	t.Helper()
	v, err := client.HGet(t.Context(), prefix+"progress:cache", field).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// eventually polls cond for up to 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestRedisProgressAcrossInstances(t *testing.T) {
	client, prefix := redistest.Client(t)
	projector := newProgress(t, client, prefix, cache.RedisProgressConfig{})
	reader := newProgress(t, client, prefix, cache.RedisProgressConfig{})
	ctx := t.Context()

	w := waitAsync(ctx, reader, 3, 10)
	notDone(t, w, "WaitFor(3, 10) with nothing applied")
	projector.Advance(3, 8) // next 9: not enough
	notDone(t, w, "WaitFor(3, 10) with 9 applied")
	if got := projector.Next(3); got != 9 {
		t.Errorf("projector Next(3) = %d, want 9", got)
	}
	projector.Advance(3, 9)
	if err := done(t, w, "WaitFor(3, 10) with 10 applied"); err != nil {
		t.Fatalf("WaitFor = %v", err)
	}
	if got := reader.Next(3); got != 10 {
		t.Errorf("reader Next(3) after its wait = %d, want 10", got)
	}
	if got := stored(t, client, prefix, "3"); got != "10" {
		t.Errorf("stored progress of 3 = %q, want 10", got)
	}

	// WaitForAll waits for every partition.
	w = func() <-chan error {
		ch := make(chan error, 1)
		go func() { ch <- reader.WaitForAll(ctx, map[int32]int64{3: 10, 4: 1, 5: 2}) }()
		return ch
	}()
	projector.Advance(4, 0)
	notDone(t, w, "WaitForAll with partition 5 behind")
	projector.Advance(5, 1)
	if err := done(t, w, "WaitForAll"); err != nil {
		t.Fatalf("WaitForAll = %v", err)
	}
}

func TestRedisProgressNeverMovesBackwards(t *testing.T) {
	client, prefix := redistest.Client(t)
	ahead := newProgress(t, client, prefix, cache.RedisProgressConfig{})
	behind := newProgress(t, client, prefix, cache.RedisProgressConfig{})
	ahead.Advance(0, 99)
	eventually(t, "progress 100 stored", func() bool { return stored(t, client, prefix, "0") == "100" })

	// A second projector on the same partition (a rebalance) resumes from
	// an older committed offset: the stored progress stays at 100.
	behind.Advance(0, 49)
	behind.Advance(1, 4)
	eventually(t, "the other partition stored", func() bool { return stored(t, client, prefix, "1") == "5" })
	if got := stored(t, client, prefix, "0"); got != "100" {
		t.Errorf("stored progress of 0 = %q after a lower advance, want 100", got)
	}
	// Locally too, progress never moves back.
	ahead.Advance(0, 10)
	if got := ahead.Next(0); got != 100 {
		t.Errorf("Next(0) = %d after a lower advance, want 100", got)
	}
	// Waiting for what the other instance applied reads it from Redis.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := behind.WaitFor(ctx, 0, 100); err != nil {
		t.Fatalf("WaitFor(0, 100) = %v", err)
	}
	if got := behind.Next(0); got != 100 {
		t.Errorf("Next(0) = %d after reading 100, want 100", got)
	}
}

func TestRedisProgressWaitForAtOnceAndCancel(t *testing.T) {
	client, prefix := redistest.Client(t)
	p := newProgress(t, client, prefix, cache.RedisProgressConfig{})
	p.Advance(2, 4) // next 5
	dead, cancel := context.WithCancel(t.Context())
	cancel()
	for _, end := range []int64{-1, 0, 1, 5} {
		if err := p.WaitFor(dead, 2, end); err != nil {
			t.Errorf("WaitFor(end %d) with next 5 = %v, want nil", end, err)
		}
	}
	if err := p.WaitFor(dead, 2, 6); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitFor(end 6) with a cancelled context = %v, want context.Canceled", err)
	}
	short, cancel2 := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel2()
	if err := p.WaitFor(short, 7, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitFor on an idle partition = %v, want context.DeadlineExceeded", err)
	}
}

// When the hash is lost (FLUSHALL, eviction) it reads 0: a reader in
// another process waits, and a live projector writes its progress again
// within RefreshInterval.
func TestRedisProgressLostHash(t *testing.T) {
	client, prefix := redistest.Client(t)
	projector := newProgress(t, client, prefix, cache.RedisProgressConfig{RefreshInterval: 200 * time.Millisecond})
	projector.Advance(0, 9)
	eventually(t, "progress stored", func() bool { return stored(t, client, prefix, "0") == "10" })
	if err := client.Del(t.Context(), prefix+"progress:cache").Err(); err != nil {
		t.Fatal(err)
	}
	reader := newProgress(t, client, prefix, cache.RedisProgressConfig{})
	if err := done(t, waitAsync(t.Context(), reader, 0, 10), "WaitFor after the loss"); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, client, prefix, "0"); got != "10" {
		t.Errorf("stored progress after refresh = %q, want 10", got)
	}

	// With no projector left, nothing writes it again: waiting times out.
	if err := projector.Close(); err != nil {
		t.Fatal(err)
	}
	if err := client.Del(t.Context(), prefix+"progress:cache").Err(); err != nil {
		t.Fatal(err)
	}
	other := newProgress(t, client, prefix, cache.RedisProgressConfig{})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := other.WaitFor(ctx, 0, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitFor with the hash lost and no projector = %v, want context.DeadlineExceeded", err)
	}
	if got := other.Next(0); got != 0 {
		t.Errorf("Next(0) with the hash lost = %d, want 0", got)
	}
}

func TestRedisProgressClose(t *testing.T) {
	client, prefix := redistest.Client(t)
	// Advances wait an hour to be written: only Close writes them.
	p, err := cache.NewRedisProgress(client, cache.RedisProgressConfig{Prefix: prefix, FlushInterval: time.Hour, RefreshInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	w := waitAsync(t.Context(), p, 1, 100)
	notDone(t, w, "WaitFor(1, 100)")
	p.Advance(1, 41)
	if got := stored(t, client, prefix, "1"); got != "" {
		t.Errorf("stored before the flush interval: %q", got)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := done(t, w, "WaitFor across Close"); !errors.Is(err, cache.ErrProgressClosed) {
		t.Errorf("WaitFor across Close = %v, want ErrProgressClosed", err)
	}
	if got := stored(t, client, prefix, "1"); got != "42" {
		t.Errorf("stored after Close = %q, want 42", got)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := p.WaitFor(t.Context(), 1, 42); err != nil {
		t.Errorf("WaitFor satisfied locally after Close = %v", err)
	}
	if err := p.WaitFor(t.Context(), 1, 43); !errors.Is(err, cache.ErrProgressClosed) {
		t.Errorf("WaitFor after Close = %v, want ErrProgressClosed", err)
	}
}
