package keys_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/keys"
	"github.com/parley-chat/parley/infra/keys/keystest"
	"github.com/parley-chat/parley/infra/pebble/pebbletest"
	"github.com/parley-chat/parley/infra/postgres/postgrestest"
)

func TestStores(t *testing.T) {
	adapters := []struct {
		name string
		open func(t *testing.T) keys.Store
	}{
		{"memory", func(*testing.T) keys.Store { return keys.NewMemory() }},
		{"pebble", func(t *testing.T) keys.Store { return keys.NewPebble(pebbletest.Open(t)) }},
		{"postgres", func(t *testing.T) keys.Store { return keys.NewPostgres(postgrestest.Open(t)) }},
	}
	for _, a := range adapters {
		t.Run(a.name, func(t *testing.T) { keystest.Run(t, a.open) })
	}
}

// countingStore counts the store's reads, to show what the ring caches.
type countingStore struct {
	keys.Store
	current, key int
}

func (c *countingStore) Current(ctx context.Context, a string) (keys.Key, error) {
	c.current++
	return c.Store.Current(ctx, a)
}

func (c *countingStore) Key(ctx context.Context, id string) (keys.Key, error) {
	c.key++
	return c.Store.Key(ctx, id)
}

func TestRing(t *testing.T) {
	ctx := context.Background()
	store := &countingStore{Store: keys.NewMemory()}
	ring, err := keys.NewRing(store, keys.Config{MaxKeys: 2})
	if err != nil {
		t.Fatal(err)
	}
	sent := events.MessageSent{MessageID: "0190f3c2-8d7e-7000-8000-000000000000", ClientMsgID: "c-1",
		Conversation: "d:alice:bob", SenderAccount: "alice", SenderDevice: "phone", Kind: "text", Body: "secret words", ServerTime: 1}
	sealed, err := events.Seal(ctx, ring, sent)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := events.Seal(ctx, ring, sent); err != nil {
			t.Fatal(err)
		}
	}
	if store.current != 1 {
		t.Errorf("4 seals read the store %d times, want 1", store.current)
	}
	opened, err := events.Open(ctx, ring, sealed)
	if err != nil || opened.(events.MessageSent).Body != "secret words" {
		t.Fatalf("Open = %+v, %v", opened, err)
	}
	if store.key != 0 {
		t.Errorf("opening with a key the ring made read the store %d times, want 0", store.key)
	}

	// The bound: two more accounts push alice's key out.
	for _, a := range []string{"bob", "carol"} {
		if _, err := ring.Current(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := events.Open(ctx, ring, sealed); err != nil {
		t.Fatal(err)
	}
	if store.key != 1 {
		t.Errorf("after eviction, opening read the store %d times, want 1", store.key)
	}

	ids, err := ring.Destroy(ctx, "alice")
	if err != nil || len(ids) != 1 {
		t.Fatalf("Destroy = %v, %v", ids, err)
	}
	erased, err := events.Open(ctx, ring, sealed)
	if err != nil {
		t.Fatalf("Open after erasure: %v, want no error", err)
	}
	if e := erased.(events.MessageSent); !e.Erased || e.Body != "" {
		t.Errorf("Open after erasure = %+v, want erased without body", e)
	}
	m, err := erased.(events.MessageSent).Message(5)
	if err != nil || !m.Deleted || m.Body != "" {
		t.Errorf("erased message = %+v, %v; want a tombstone", m, err)
	}
}

func TestOpenRefusesTampering(t *testing.T) {
	ctx := context.Background()
	ring, err := keys.NewRing(keys.NewMemory(), keys.Config{})
	if err != nil {
		t.Fatal(err)
	}
	sent := events.MessageSent{MessageID: "0190f3c2-8d7e-7000-8000-000000000000", ClientMsgID: "c-1",
		Conversation: "d:alice:bob", SenderAccount: "alice", SenderDevice: "phone", Kind: "text", Body: "hi", ServerTime: 1}
	sealed, err := events.Seal(ctx, ring, sent)
	if err != nil {
		t.Fatal(err)
	}
	moved := sealed.(events.MessageSent)
	moved.MessageID = "0190f3c2-8d7e-7000-8000-000000000001"
	flipped := sealed.(events.MessageSent)
	flipped.SealedBody = append([]byte(nil), flipped.SealedBody...)
	flipped.SealedBody[len(flipped.SealedBody)-1] ^= 1
	short := sealed.(events.MessageSent)
	short.SealedBody = short.SealedBody[:5]
	bobs, _ := ring.Current(ctx, "bob")
	stolen := sealed.(events.MessageSent)
	stolen.BodyKey = bobs.ID
	for name, e := range map[string]events.MessageSent{"moved to another message": moved, "bit flipped": flipped,
		"too short": short, "another account's key": stolen} {
		if _, err := events.Open(ctx, ring, e); !errors.Is(err, events.ErrTampered) {
			t.Errorf("%s: Open err = %v, want ErrTampered", name, err)
		}
	}
}

// BenchmarkSeal is what the send path adds per message: one AES-GCM seal
// under a key the ring has cached.
func BenchmarkSeal(b *testing.B) {
	ctx := context.Background()
	ring, err := keys.NewRing(keys.NewMemory(), keys.Config{})
	if err != nil {
		b.Fatal(err)
	}
	sent := events.MessageSent{MessageID: "0190f3c2-8d7e-7000-8000-000000000000", ClientMsgID: "c-0001",
		Conversation: "d:alice:bob", SenderAccount: "alice", SenderDevice: "phone", Kind: "text",
		Body: "hello there, how are you doing today?", ServerTime: 1795714619000}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := events.Seal(ctx, ring, sent); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen is what every reader of the log adds per message.
func BenchmarkOpen(b *testing.B) {
	ctx := context.Background()
	ring, err := keys.NewRing(keys.NewMemory(), keys.Config{})
	if err != nil {
		b.Fatal(err)
	}
	sealed, err := events.Seal(ctx, ring, events.MessageSent{MessageID: "0190f3c2-8d7e-7000-8000-000000000000",
		ClientMsgID: "c-0001", Conversation: "d:alice:bob", SenderAccount: "alice", SenderDevice: "phone", Kind: "text",
		Body: "hello there, how are you doing today?", ServerTime: 1795714619000})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := events.Open(ctx, ring, sealed); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzOpen: whatever a record's sealed body and key id hold, opening it
// either gives the body that was sealed, reads as erased, or is refused
// as tampered; it never panics or opens to something else.
func FuzzOpen(f *testing.F) {
	ctx := context.Background()
	ring, err := keys.NewRing(keys.NewMemory(), keys.Config{})
	if err != nil {
		f.Fatal(err)
	}
	base := events.MessageSent{MessageID: "0190f3c2-8d7e-7000-8000-000000000000", ClientMsgID: "c-1",
		Conversation: "d:alice:bob", SenderAccount: "alice", SenderDevice: "phone", Kind: "text", Body: "seed", ServerTime: 1}
	sealed, err := events.Seal(ctx, ring, base)
	if err != nil {
		f.Fatal(err)
	}
	s := sealed.(events.MessageSent)
	f.Add(s.BodyKey, s.SealedBody)
	f.Add(s.BodyKey, []byte{})
	f.Add("unknown", s.SealedBody)
	f.Fuzz(func(t *testing.T, key string, body []byte) {
		e := s
		e.BodyKey, e.SealedBody = key, body
		if key == "" {
			return // a plaintext record: nothing to open
		}
		out, err := events.Open(ctx, ring, e)
		if err != nil {
			if !errors.Is(err, events.ErrTampered) {
				t.Fatalf("Open err = %v, want ErrTampered", err)
			}
			return
		}
		got := out.(events.MessageSent)
		if !got.Erased && got.Body != "seed" {
			t.Fatalf("opened to %q", got.Body)
		}
	})
}

// BenchmarkPebbleFirstKeys is a crowd of accounts sending for the first
// time: each Current creates the account's key with a synced commit, on
// disk. Accounts must not wait for each other's fsync.
func BenchmarkPebbleFirstKeys(b *testing.B) {
	db := pebbletest.OpenOnDisk(b)
	s := keys.NewPebble(db)
	var next atomic.Int64
	b.SetParallelism(32) // 64 concurrent first sends on 2 cores
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Current(context.Background(), fmt.Sprintf("new%d", next.Add(1))); err != nil {
				b.Error(err)
			}
		}
	})
}
