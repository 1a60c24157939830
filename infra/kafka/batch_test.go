package kafka

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// A batch consumer hands each partition's records over in order, in
// batches, retries a failed batch whole, and a restart of the group
// resumes after what it committed.
func TestBatchConsumer(t *testing.T) {
	b, l := startLog(t, t.TempDir())
	defer b.Close()
	defer l.Close()
	convs := []string{"d:a:b", "d:c:d", "g:x", "g:y"}
	for i := 0; i < 200; i++ {
		if _, err := l.Append(context.Background(), uuid.NewString(), sent(convs[i%len(convs)], i)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	next := map[int32]int64{} // next offset expected per partition
	seen, batches, biggest := 0, 0, 0
	failed := false
	handler := func(_ context.Context, batch []RawRecord) error {
		mu.Lock()
		defer mu.Unlock()
		if !failed {
			failed = true
			return errors.New("first batch fails once")
		}
		for _, r := range batch {
			if r.Offset < next[r.Partition] {
				continue // redelivered after a restart: allowed, idempotent handlers skip it
			}
			if r.Offset != next[r.Partition] {
				t.Errorf("partition %d: offset %d, want %d", r.Partition, r.Offset, next[r.Partition])
			}
			next[r.Partition] = r.Offset + 1
			seen++
		}
		batches++
		biggest = max(biggest, len(batch))
		return nil
	}
	run := func(want int) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = l.RunBatchConsumer(ctx, BatchConsumerConfig{Group: "test.batch"}, handler)
		}()
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			n := seen
			mu.Unlock()
			if n >= want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("saw %d of %d records", n, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond) // let the offsets commit
		cancel()
		<-done
	}
	run(200)
	if biggest < 2 {
		t.Errorf("largest batch %d: records were not batched", biggest)
	}
	for i := 0; i < 20; i++ {
		if _, err := l.Append(context.Background(), uuid.NewString(), sent(convs[i%len(convs)], i)); err != nil {
			t.Fatal(err)
		}
	}
	run(220)
	t.Logf("%d records in %d batches, largest %d", seen, batches, biggest)
}
