// Package redistest gives integration tests a Redis client and a key prefix
// of their own. Tests share one server, so they never flush it: each test
// writes under a fresh random prefix and deletes exactly those keys when it
// ends.
//
// The server is taken from PARLEY_TEST_REDIS_ADDR (default 127.0.0.1:6379).
// When it cannot be reached a test is skipped with the reason — unless CI is
// "true", where a missing service must fail the build instead of hiding
// every Redis test behind a skip.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	parleyredis "github.com/parley-chat/parley/infra/redis"
	"github.com/redis/go-redis/v9"
)

// AddrEnv names the environment variable with the test server's address.
const AddrEnv = "PARLEY_TEST_REDIS_ADDR"

// Addr is the test server's address: $PARLEY_TEST_REDIS_ADDR or 127.0.0.1:6379.
func Addr() string {
	if a := os.Getenv(AddrEnv); a != "" {
		return a
	}
	return parleyredis.DefaultAddr
}

// Client connects to the test server and returns the client with a unique
// key prefix "parleytest:<random>:". When the test ends, every key under
// the prefix is deleted and the client is closed. If the server is
// unreachable, the test is skipped, or fails when CI=true.
func Client(t testing.TB) (*redis.Client, string) {
	t.Helper()
	if err := probe(); err != nil {
		Unavailable(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	client, err := parleyredis.Open(ctx, parleyredis.Config{Addr: Addr()})
	if err != nil {
		Unavailable(t, err)
	}
	prefix := "parleytest:" + randomHex(8) + ":"
	t.Cleanup(func() {
		// SCAN walks the whole keyspace whatever the pattern: on a shared
		// server that holds millions of other keys (2 million: about 1.2 s
		// idle, several times that under a full test run), 10 s was not
		// always enough.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := DeletePrefix(ctx, client, prefix); err != nil {
			t.Errorf("cannot delete test keys under %q: %v", prefix, err)
		}
		_ = client.Close()
	})
	return client, prefix
}

var (
	probeOnce sync.Once
	probeErr  error
)

// probe pings the server once per test binary, without retries, so that a
// missing server costs one dial rather than one round of retries per test.
func probe() error {
	probeOnce.Do(func() {
		c := redis.NewClient(&redis.Options{Addr: Addr(), MaxRetries: -1, DialTimeout: 2 * time.Second})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := c.Ping(ctx).Err(); err != nil {
			probeErr = err
		}
	})
	return probeErr
}

// Unavailable ends t because the Redis server cannot be reached: a skip with
// the reason, or a failure when the environment variable CI is "true".
func Unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("redis at %s is required in CI (CI=true): %v", Addr(), err)
	}
	t.Skipf("skipping: redis at %s is unreachable (set %s, or CI=true to fail instead): %v", Addr(), AddrEnv, err)
}

// DeletePrefix deletes every key that starts with prefix, with SCAN and DEL
// so that it never blocks the server the way KEYS would.
func DeletePrefix(ctx context.Context, client redis.UniversalClient, prefix string) error {
	pattern := escapeGlob(prefix) + "*"
	var cursor uint64
	for {
		keys, next, err := client.Scan(ctx, cursor, pattern, 5000).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := client.Del(ctx, keys...).Err(); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// escapeGlob quotes the characters SCAN MATCH treats specially.
func escapeGlob(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\', '^', '-':
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
