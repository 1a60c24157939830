package redis_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	parleyredis "github.com/parley-chat/parley/infra/redis"
	"github.com/parley-chat/parley/infra/redis/redistest"
	goredis "github.com/redis/go-redis/v9"
)

// Concurrent commands sent through one Pipeline each get their own
// answer, and an error of one command stays its own.
func TestPipelineAnswersEveryCommand(t *testing.T) {
	client, prefix := redistest.Client(t)
	p := parleyredis.NewPipeline(client, 2)
	ctx := context.Background()
	const n = 300
	got := make([]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			cmd := goredis.NewIntCmd(ctx, "incr", prefix+"counter")
			if errs[i] = p.Do(ctx, cmd); errs[i] == nil {
				got[i], errs[i] = cmd.Result()
			}
		})
	}
	// A command Redis refuses fails alone, in the same pipelines.
	bad := goredis.NewIntCmd(ctx, "incr", prefix+"not-a-number")
	if err := client.Set(ctx, prefix+"not-a-number", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = p.Do(ctx, bad) })
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("incr %d: %v", i, err)
		}
	}
	if bad.Err() == nil {
		t.Fatal("incr of a string: no error")
	}
	slices.Sort(got)
	for i, v := range got {
		if v != int64(i+1) {
			t.Fatalf("answers %v, want 1..%d each once", got, n)
		}
	}
	// A caller that has given up gets its context's error.
	done, cancel := context.WithCancel(ctx)
	cancel()
	cmd := goredis.NewIntCmd(done, "incr", prefix+"counter")
	if err := p.Do(done, cmd); err == nil {
		t.Fatalf("a cancelled command answered %d", cmd.Val())
	}
}

// A caller whose context ends while its command is in a pipeline gets
// its context's error at its deadline, and leaves the command to the
// pipeline, which writes the reply into it later: before, the caller set
// the command's error itself, racing that write (the race detector caught
// it in a cluster test; this test fails under -race that way).
func TestPipelineCallerGivingUpLeavesItsCommand(t *testing.T) {
	client, prefix := redistest.Client(t)
	p := parleyredis.NewPipeline(client, 2)
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		// Redis holds the reply for 200 ms: the caller's context ends
		// while the command is in the pipeline.
		cmd := goredis.NewStringSliceCmd(ctx, "blpop", prefix+"empty", "0.2")
		start := time.Now()
		err := p.Do(ctx, cmd)
		if err == nil {
			err = cmd.Err() // the pipeline's own deadline came first
		}
		if err == nil || errors.Is(err, goredis.Nil) {
			t.Fatalf("a command whose context ended answered %v", err)
		}
		if d := time.Since(start); d > 150*time.Millisecond {
			t.Fatalf("the caller waited %v past its 30 ms deadline", d)
		}
		cancel()
	}
}
