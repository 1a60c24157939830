package cache_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/redis/redistest"
	"github.com/parley-chat/parley/projections/cache"
	"github.com/parley-chat/parley/projections/cache/cachetest"
	"github.com/redis/go-redis/v9"
)

func newRedis(t testing.TB, now func() time.Time) (*cache.Redis, *redis.Client, string) {
	t.Helper()
	client, prefix := redistest.Client(t)
	c, err := cache.NewRedis(client, cache.RedisConfig{Prefix: prefix, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return c, client, prefix
}

func TestRedisContract(t *testing.T) {
	cachetest.Run(t, func(t *testing.T, now func() time.Time) cache.Cache {
		c, _, _ := newRedis(t, now)
		return c
	})
}

var (
	ab = domain.DirectConversation("alice", "bob")
	g1 = domain.GroupConversation("g1")
)

const base = domain.MsgID(1 << 48)

func message(conv domain.ConversationID, id domain.MsgID, at time.Time) domain.Message {
	return domain.Message{
		ID: uuid.New(), MsgID: id, ClientMsgID: fmt.Sprintf("c%d", id),
		Sender: domain.Sender{Account: "alice", Device: "phone"}, Conversation: conv,
		Kind: "text", Body: "hello " + strconv.FormatInt(int64(id), 10), ServerTime: at,
	}
}

func after(t *testing.T, c cache.Cache, conv domain.ConversationID, a domain.MsgID) ([]domain.Message, bool) {
	t.Helper()
	ms, _, covered, err := c.After(t.Context(), conv, a, 100)
	if err != nil {
		t.Fatalf("After(%s, %d): %v", conv, a, err)
	}
	return ms, covered
}

// Losing a conversation's key (FLUSHALL, eviction, expiry) loses its
// coverage with it: the cache must not answer, and a new message starts
// coverage afresh from its own floor.
func TestRedisLostKeyIsNotCovered(t *testing.T) {
	c, client, prefix := newRedis(t, time.Now)
	ctx := t.Context()
	now := time.Now()
	for i := 1; i <= 3; i++ {
		if err := c.Add(ctx, message(ab, base+domain.MsgID(i), now), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Add(ctx, message(g1, base+1, now), 0); err != nil {
		t.Fatal(err)
	}
	if ms, covered := after(t, c, ab, 0); !covered || len(ms) != 3 {
		t.Fatalf("before the loss: %d messages, covered %v", len(ms), covered)
	}
	if err := client.Del(ctx, prefix+"conv:"+ab.String()).Err(); err != nil {
		t.Fatal(err)
	}
	for _, a := range []domain.MsgID{0, base, base + 3, base + 100} {
		if ms, covered := after(t, c, ab, a); covered || len(ms) != 0 {
			t.Errorf("after the loss, After(%d) = %d messages, covered %v; want not covered", a, len(ms), covered)
		}
	}
	if _, covered := after(t, c, g1, 0); !covered {
		t.Error("another conversation lost its coverage")
	}

	// The live projection vouches only from the next message on.
	if err := c.Add(ctx, message(ab, base+4, now), base+3); err != nil {
		t.Fatal(err)
	}
	if _, covered := after(t, c, ab, base+2); covered {
		t.Error("After(3 before the loss) is covered again")
	}
	if ms, covered := after(t, c, ab, base+3); !covered || len(ms) != 1 || ms[0].MsgID != base+4 {
		t.Errorf("After(%d) = %v covered %v, want [%d]", base+3, ms, covered, base+4)
	}
}

// A key that somehow lost only its marker proves nothing: the next add
// starts the conversation afresh instead of vouching for stale members.
func TestRedisMissingMarkerStartsAfresh(t *testing.T) {
	c, client, prefix := newRedis(t, time.Now)
	ctx := t.Context()
	key := prefix + "conv:" + ab.String()
	now := time.Now()
	for i := 1; i <= 3; i++ {
		if err := c.Add(ctx, message(ab, base+domain.MsgID(i), now), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.ZRem(ctx, key, "#").Err(); err != nil {
		t.Fatal(err)
	}
	if _, covered := after(t, c, ab, 0); covered {
		t.Fatal("covered without a marker")
	}
	if err := c.Add(ctx, message(ab, base+5, now), base+4); err != nil {
		t.Fatal(err)
	}
	if n, err := client.ZCard(ctx, key).Result(); err != nil || n != 2 {
		t.Errorf("key holds %d members (%v), want the marker and message 5", n, err)
	}
}

func TestRedisKeyLayoutAndTTL(t *testing.T) {
	clk := time.Date(2030, 1, 10, 12, 0, 0, 0, time.UTC)
	c, client, prefix := newRedis(t, func() time.Time { return clk })
	ctx := t.Context()
	m := message(ab, base+7, clk)
	if err := c.Add(ctx, m, base+5); err != nil {
		t.Fatal(err)
	}
	key := prefix + "conv:d:alice:bob"
	got, err := client.ZRangeWithScores(ctx, key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Member != "#" || got[0].Score != float64(base+5) || got[1].Score != float64(base+7) {
		t.Fatalf("members = %+v, want the marker at %d and the message at %d", got, base+5, base+7)
	}
	wantPrefix := fmt.Sprintf("%d|%d|{", clk.UnixMilli(), base+7)
	if s := got[1].Member.(string); len(s) < len(wantPrefix) || s[:len(wantPrefix)] != wantPrefix {
		t.Errorf("member = %q, want it to start with %q", s, wantPrefix)
	}
	ttl, err := client.PTTL(ctx, key).Result()
	if err != nil || ttl <= cache.Retention-time.Minute || ttl > cache.Retention {
		t.Errorf("TTL = %v (%v), want about %v", ttl, err, cache.Retention)
	}
	// One SCAN call may return nothing of a large keyspace (other tests
	// share the server): iterate to the end.
	var keys []string
	for cursor := uint64(0); ; {
		batch, next, err := client.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			t.Fatal(err)
		}
		keys, cursor = append(keys, batch...), next
		if cursor == 0 {
			break
		}
	}
	if len(keys) != 1 {
		t.Errorf("keys = %v, want only the conversation", keys)
	}
}

func TestRedisAddBatch(t *testing.T) {
	c, client, _ := newRedis(t, time.Now)
	ctx := t.Context()
	now := time.Now()
	var batch []cache.Addition
	for i := 1; i <= 20; i++ {
		conv := []domain.ConversationID{ab, g1}[i%2]
		batch = append(batch, cache.Addition{Message: message(conv, base+domain.MsgID(i), now), Floor: base})
	}
	// The server forgets its scripts (as after a restart): the batch
	// loads the script again and succeeds.
	if err := client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for range 2 { // and a replay changes nothing
		if err := c.AddBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	for _, conv := range []domain.ConversationID{ab, g1} {
		if ms, covered := after(t, c, conv, base); !covered || len(ms) != 10 {
			t.Errorf("%s: %d messages, covered %v; want 10", conv, len(ms), covered)
		}
	}
	if err := c.AddBatch(ctx, nil); err != nil {
		t.Errorf("AddBatch(nil) = %v", err)
	}
}

func TestRedisConfig(t *testing.T) {
	if _, err := cache.NewRedis(nil, cache.RedisConfig{Retention: -time.Hour}); err == nil {
		t.Error("negative retention accepted")
	}
}

// BenchmarkRedisAdd adds fresh messages to 100 conversations, one Add (one
// EVALSHA round trip) at a time.
func BenchmarkRedisAdd(b *testing.B) {
	c, _, _ := newRedis(b, time.Now)
	ctx := context.Background()
	convs := benchConversations(100)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := message(convs[i%len(convs)], base+domain.MsgID(i), now)
		if err := c.Add(ctx, m, base-1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisAddParallel is BenchmarkRedisAdd from GOMAXPROCS goroutines.
func BenchmarkRedisAddParallel(b *testing.B) {
	c, _, _ := newRedis(b, time.Now)
	convs := benchConversations(100)
	now := time.Now()
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			i := next.Add(1)
			if err := c.Add(ctx, message(convs[i%int64(len(convs))], base+domain.MsgID(i), now), base-1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRedisAddBatch adds messages 100 to a pipeline; ns/op is per message.
func BenchmarkRedisAddBatch(b *testing.B) {
	c, _, _ := newRedis(b, time.Now)
	ctx := context.Background()
	convs := benchConversations(100)
	now := time.Now()
	const size = 100
	batch := make([]cache.Addition, 0, size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		batch = append(batch, cache.Addition{Message: message(convs[i%len(convs)], base+domain.MsgID(i), now), Floor: base - 1})
		if len(batch) == size || i == b.N-1 {
			if err := c.AddBatch(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// BenchmarkRedisAfter reads a page of 50 from a conversation of 1000.
func BenchmarkRedisAfter(b *testing.B) {
	c, _, _ := newRedis(b, time.Now)
	ctx := context.Background()
	now := time.Now()
	var batch []cache.Addition
	for i := 1; i <= 1000; i++ {
		batch = append(batch, cache.Addition{Message: message(ab, base+domain.MsgID(i), now), Floor: base})
	}
	if err := c.AddBatch(ctx, batch); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ms, more, covered, err := c.After(ctx, ab, base+500, 50)
		if err != nil || !covered || !more || len(ms) != 50 {
			b.Fatalf("After = %d messages, more %v, covered %v, err %v", len(ms), more, covered, err)
		}
	}
}

func benchConversations(n int) []domain.ConversationID {
	out := make([]domain.ConversationID, n)
	for i := range out {
		out[i] = domain.GroupConversation(domain.GroupID(fmt.Sprintf("bench%d", i)))
	}
	return out
}
