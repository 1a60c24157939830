package progress

import (
	"context"
	"maps"
	"strings"
	"testing"

	"github.com/parley-chat/parley/infra/redis/redistest"
	goredis "github.com/redis/go-redis/v9"
)

// A process that last wrote a partition on another server is suspect
// even when another process has already written it on this one since
// (the hash then names this server, and holds as much as it knew).
func TestRedisNoticesItsOwnServerChanged(t *testing.T) {
	client, prefix := redistest.Client(t)
	ctx := t.Context()
	var losses []map[int32]int64
	b := NewRedis(client, prefix+"progress:own").OnLoss(func(_ context.Context, lost map[int32]int64) error {
		losses = append(losses, lost)
		return nil
	})
	if _, err := b.Save(ctx, map[int32]int64{0: 10}); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.known[0] = written{next: 10, run: "0000000000000000000000000000000000000000"}
	b.mu.Unlock()
	if _, err := b.Save(ctx, map[int32]int64{0: 12}); err != nil {
		t.Fatal(err)
	}
	if len(losses) != 1 || !maps.Equal(losses[0], map[int32]int64{0: 10}) {
		t.Fatalf("losses %v, want partition 0 from 10", losses)
	}
}

// A Redis user that may not run INFO still writes progress; only a hash
// that went back is noticed then.
func TestRedisWithoutInfo(t *testing.T) {
	admin, prefix := redistest.Client(t)
	ctx := t.Context()
	user := "parley-noinfo-" + strings.TrimSuffix(prefix, ":")
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-info").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", user) })
	client := goredis.NewClient(&goredis.Options{Addr: redistest.Addr(), Username: user, Password: "pw"})
	t.Cleanup(func() { _ = client.Close() })
	var losses []map[int32]int64
	key := prefix + "progress:noinfo"
	b := NewRedis(client, key).OnLoss(func(_ context.Context, lost map[int32]int64) error {
		losses = append(losses, lost)
		return nil
	})
	if _, err := b.Save(ctx, map[int32]int64{0: 10}); err != nil {
		t.Fatal(err)
	}
	admin.HSet(ctx, key, "0", 3)
	if _, err := b.Save(ctx, map[int32]int64{0: 12}); err != nil {
		t.Fatal(err)
	}
	if len(losses) != 1 || !maps.Equal(losses[0], map[int32]int64{0: 3}) || admin.HGet(ctx, key, "0").Val() != "12" {
		t.Fatalf("losses %v, stored %s", losses, admin.HGet(ctx, key, "0").Val())
	}
}
