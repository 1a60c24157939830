package routes_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/infra/redis/redistest"
	"github.com/parley-chat/parley/infra/routes"
	"github.com/parley-chat/parley/infra/routes/routestest"
)

func TestMemoryContract(t *testing.T) {
	routestest.Run(t, func(t *testing.T) routes.Table { return routes.NewMemory() })
}

func TestRedisContract(t *testing.T) {
	routestest.Run(t, func(t *testing.T) routes.Table {
		rdb, prefix := redistest.Client(t)
		return routes.NewRedis(rdb, prefix, nil)
	})
}

// The Redis keys follow the design notes: route TTL 1800 s, online set TTL
// 3600 s; a missed online set is reloaded from the directory.
func TestRedisKeysAndDirectoryReload(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := redistest.Client(t)
	users := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/accounts/carol/devices" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string][]string{"devices": {"phone", "tablet"}})
	}))
	defer users.Close()
	dir, err := routes.NewHTTPDirectory(users.URL)
	if err != nil {
		t.Fatal(err)
	}
	tb := routes.NewRedis(rdb, prefix, dir)
	if _, err := tb.Claim(ctx, "alice/phone", "127.0.0.1:1", false); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, prefix+"route:alice/phone").Val(); ttl < routes.RouteTTL-5*time.Second || ttl > routes.RouteTTL {
		t.Errorf("route TTL %v, want about %v", ttl, routes.RouteTTL)
	}
	if ttl := rdb.PTTL(ctx, prefix+"online:alice").Val(); ttl < routes.OnlineTTL-5*time.Second || ttl > routes.OnlineTTL {
		t.Errorf("online TTL %v, want about %v", ttl, routes.OnlineTTL)
	}
	got, err := tb.Online(ctx, "carol")
	if err != nil || len(got) != 2 {
		t.Fatalf("reloaded online set %v %v", got, err)
	}
	if n := rdb.SCard(ctx, prefix+"online:carol").Val(); n != 2 {
		t.Errorf("reloaded set has %d members in Redis", n)
	}
	if got, err := tb.Online(ctx, "nobody"); err != nil || len(got) != 0 {
		t.Errorf("unknown account online %v %v", got, err)
	}
}

func TestHTTPDirectoryRejectsBadAnswers(t *testing.T) {
	tests := []struct {
		name string
		h    http.HandlerFunc
	}{
		{"server error", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("<html>")) }},
		{"bad device id", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"devices":["a/b"]}`)) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.h)
			defer srv.Close()
			dir, _ := routes.NewHTTPDirectory(srv.URL)
			if _, err := dir.Devices(context.Background(), "alice"); err == nil {
				t.Error("bad answer accepted")
			}
		})
	}
	if _, err := routes.NewHTTPDirectory("ftp://x"); err == nil {
		t.Error("non-http directory url accepted")
	}
}

// A watcher whose subscription connection breaks is told to read again
// (Redis keeps nothing for a subscriber that is away), and hears the
// changes made after the new subscription.
func TestRedisWatchResyncsAfterABrokenSubscription(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A client of its own, named, so that this test kills its own
	// subscription and no other on the shared server.
	name := strings.ReplaceAll(prefix, ":", "-") + "watch"
	own := goredis.NewClient(&goredis.Options{Addr: redistest.Addr(), ClientName: name})
	defer own.Close()
	changes := make(chan domain.Presence, 16)
	resyncs := make(chan struct{}, 16)
	wait, err := routes.NewRedis(own, prefix, nil).WatchPresence(ctx, func(p domain.Presence) { changes <- p },
		func() { resyncs <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); wait() }()
	list, err := rdb.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " name="+name+" ") {
			id := strings.TrimPrefix(strings.Fields(line)[0], "id=")
			if err := rdb.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
				t.Fatal(err)
			}
			killed++
		}
	}
	if killed == 0 {
		t.Fatalf("no connection named %s in CLIENT LIST", name)
	}
	select {
	case <-resyncs:
	case <-time.After(10 * time.Second):
		t.Fatal("no resync after the subscription broke")
	}
	tb := routes.NewRedis(rdb, prefix, nil)
	if _, err := tb.Claim(ctx, "alice/phone", "a:1", false); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-changes:
		if p.Account != "alice" || !p.Online {
			t.Errorf("change after the new subscription: %+v", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no change heard on the new subscription")
	}
}
