package redistest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/parley-chat/parley/infra/redis/redistest"
)

// Each test gets its own prefix, and its keys are gone when it ends;
// other keys on the shared server are left alone.
func TestClientCleansUpItsPrefixOnly(t *testing.T) {
	outer, outerPrefix := redistest.Client(t)
	ctx := context.Background()
	if err := outer.Set(ctx, outerPrefix+"keep", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var innerPrefix string
	t.Run("inner", func(t *testing.T) {
		c, prefix := redistest.Client(t)
		innerPrefix = prefix
		if prefix == outerPrefix || !strings.HasPrefix(prefix, "parleytest:") {
			t.Fatalf("prefix %q (outer %q)", prefix, outerPrefix)
		}
		for _, k := range []string{"a", "b:c", "[x]*?"} {
			if err := c.Set(ctx, prefix+k, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	})
	keys, _, err := outer.Scan(ctx, 0, innerPrefix+"*", 1000).Result()
	if err != nil || len(keys) != 0 {
		t.Errorf("after the inner test: keys %v (%v), want none", keys, err)
	}
	if n, err := outer.Exists(ctx, outerPrefix+"keep").Result(); err != nil || n != 1 {
		t.Errorf("the outer test's key is gone (%v)", err)
	}
}
