package redis_test

import (
	"context"
	"strings"
	"testing"
	"time"

	parleyredis "github.com/parley-chat/parley/infra/redis"
	"github.com/parley-chat/parley/infra/redis/redistest"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  parleyredis.Config
		want []string // substrings of the error; none for a valid config
	}{
		{name: "defaults", cfg: parleyredis.Config{}.WithDefaults()},
		{name: "everything set", cfg: parleyredis.Config{Addr: "redis.internal:6380", Password: "x", DB: 3, Prefix: "p:", PoolSize: 50}},
		{name: "no port", cfg: parleyredis.Config{Addr: "localhost"}, want: []string{"not host:port"}},
		{name: "bad port", cfg: parleyredis.Config{Addr: "localhost:http"}, want: []string{"1..65535"}},
		{
			name: "every problem at once",
			cfg:  parleyredis.Config{Addr: "localhost:0", DB: -1, PoolSize: -2},
			want: []string{"1..65535", "db -1", "pool size -2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors with %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	c := parleyredis.Config{}.WithDefaults()
	if c.Addr != "127.0.0.1:6379" || c.Prefix != "parley:" {
		t.Errorf("defaults = %+v", c)
	}
	if c := (parleyredis.Config{Addr: "h:1", Prefix: "x:"}).WithDefaults(); c.Addr != "h:1" || c.Prefix != "x:" {
		t.Errorf("WithDefaults overwrote set fields: %+v", c)
	}
}

func TestOpenRejectsABadConfig(t *testing.T) {
	if _, err := parleyredis.Open(context.Background(), parleyredis.Config{Addr: "nohost"}); err == nil {
		t.Error("Open with a bad address succeeded")
	}
}

func TestOpenFailsWithoutAServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	// Port 1 on the loopback: nothing listens there.
	if c, err := parleyredis.Open(ctx, parleyredis.Config{Addr: "127.0.0.1:1"}); err == nil {
		_ = c.Close()
		t.Fatal("Open succeeded without a server")
	} else if !strings.Contains(err.Error(), "cannot reach redis") {
		t.Errorf("Open = %v", err)
	}
}

func TestOpenPings(t *testing.T) {
	redistest.Client(t) // skips (or fails in CI) without a server
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := parleyredis.Open(ctx, parleyredis.Config{Addr: redistest.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Error(err)
	}
}
