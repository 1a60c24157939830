package cache_test

import (
	"testing"
	"time"

	"github.com/parley-chat/parley/projections/cache"
	"github.com/parley-chat/parley/projections/cache/cachetest"
)

// TestMemoryContract runs the cache contract against Memory. It lives in
// the external test package because cachetest imports cache.
func TestMemoryContract(t *testing.T) {
	cachetest.Run(t, func(t *testing.T, now func() time.Time) cache.Cache {
		return cache.NewMemoryWithClock(cache.Retention, now)
	})
}
