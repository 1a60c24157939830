package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections/runner"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// appended is what an Append was given and where it landed.
type appended struct {
	pos     events.Position
	id      string
	event   events.MessageSent
	payload []byte
}

// Concurrent appends in process to many partitions all land, each at an
// offset of its own, in the order each sender appended; a franz-go
// consumer, the Kafka-protocol source (Sarama) and the in-process source
// read back the very records appended: key, value, the three headers and
// positions, with the same timestamps in both sources.
func TestInProcessAppendsReadBackIdentically(t *testing.T) {
	const partitions, senders, each = 8, 24, 40
	b, l := startLogWith(t, true, EmbeddedConfig{DataDir: t.TempDir()}, Config{Partitions: partitions})
	defer b.Close()
	defer l.Close()

	var mu sync.Mutex
	var all []appended
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			last := map[string]int64{}
			for i := range each {
				conv := fmt.Sprintf("g:c%d", (s*each+i)%29)
				e, id := sent(conv, i), uuid.NewString()
				pos, err := l.Append(context.Background(), id, e)
				if err != nil {
					t.Error(err)
					return
				}
				if prev, ok := last[conv]; ok && pos.Offset <= prev {
					t.Errorf("sender %d: %s at offset %d after %d", s, conv, pos.Offset, prev)
				}
				last[conv] = pos.Offset
				payload, _ := events.Encode(e)
				mu.Lock()
				all = append(all, appended{pos, id, e, payload})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// Every offset of every partition is taken once, with no gap.
	byPos := map[events.Position]appended{}
	from, to := map[int32]int64{}, map[int32]int64{}
	for _, a := range all {
		if _, dup := byPos[a.pos]; dup {
			t.Fatalf("two appends landed at %v", a.pos)
		}
		byPos[a.pos] = a
		from[a.pos.Partition], to[a.pos.Partition] = 0, max(to[a.pos.Partition], a.pos.Offset+1)
	}
	for p, end := range to {
		for o := range end {
			if _, ok := byPos[events.Position{Partition: p, Offset: o}]; !ok {
				t.Fatalf("partition %d has no append at offset %d of %d", p, o, end)
			}
		}
	}

	want := map[int32][]runner.RawRecord{}
	for p, end := range to {
		for o := range end {
			a := byPos[events.Position{Partition: p, Offset: o}]
			want[p] = append(want[p], runner.RawRecord{Offset: o, Name: a.event.EventName(), Payload: a.payload})
		}
	}
	viaKafka := readAll(t, l.RangeSource(from, to))
	inProcess := readAll(t, b.RangeSource(l.Topic(), from, to))
	for p := range want {
		for i := range want[p] {
			want[p][i].Timestamp = viaKafka[p][i].Timestamp
		}
		sameRecords(t, fmt.Sprintf("the Kafka source, partition %d", p), viaKafka[p], want[p])
		sameRecords(t, fmt.Sprintf("the in-process source, partition %d", p), inProcess[p], want[p])
	}

	// A franz-go consumer sees the records whole.
	offsets := map[string]map[int32]kgo.Offset{l.Topic(): {}}
	for p := range to {
		offsets[l.Topic()][p] = kgo.NewOffset().At(0)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(l.Brokers()...), kgo.ConsumePartitions(offsets))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for n := 0; n < len(all); {
		fs := cl.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatalf("after %d of %d records: %v", n, len(all), err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			a := byPos[events.Position{Partition: r.Partition, Offset: r.Offset}]
			var headers []string
			for _, h := range r.Headers {
				headers = append(headers, h.Key+"="+string(h.Value))
			}
			wantHeaders := []string{uuidHeader + "=" + a.id, events.MetadataName + "=" + a.event.EventName(), MetadataKey + "=" + a.event.Key()}
			if string(r.Key) != a.event.Key() || string(r.Value) != string(a.payload) || !slices.Equal(headers, wantHeaders) {
				t.Errorf("record at %d/%d: key %q value %s headers %v, want %q %s %v",
					r.Partition, r.Offset, r.Key, r.Value, headers, a.event.Key(), a.payload, wantHeaders)
			}
		})
	}
}

// A caller that gives up on its append fails no one else's: appends
// queued behind it land, and so does its own, as over the Kafka protocol.
func TestInProcessAppendGivenUpOnFailsNoOther(t *testing.T) {
	b, l, hold, entered, release := stallingLog(t)
	defer b.Close()
	defer l.Close()
	defer release()

	hold.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := l.Append(ctx, uuid.NewString(), sent("d:alice:bob", 0))
		gaveUp <- err
	}()
	<-entered // its fsync is under way
	others := make(chan error, 4)
	for i := range 4 {
		go func() {
			_, err := l.Append(context.Background(), uuid.NewString(), sent("d:alice:bob", i+1))
			others <- err
		}()
	}
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Errorf("the append given up on returned %v, want its context's error", err)
	}
	release()
	for range 4 {
		if err := <-others; err != nil {
			t.Errorf("an append failed with another caller's giving up: %v", err)
		}
	}
	end, err := l.EndOffset(context.Background(), events.PartitionFor("d:alice:bob", 2))
	if err != nil {
		t.Fatal(err)
	}
	if end != 5 {
		t.Errorf("the partition ends at %d, want 5: every append landed", end)
	}
	if err := l.Writable(); err != nil {
		t.Errorf("the log is unwritable after a caller gave up: %v", err)
	}
}

// The broker checks an in-process batch as it checks a produced one, and
// takes only batches with no producer id.
func TestAppendPartitionsChecksBatches(t *testing.T) {
	b, l := startLog(t, true, t.TempDir())
	defer b.Close()
	defer l.Close()
	good := appendBatch(nil, []queuedRecord{{r: &kgo.Record{Key: []byte("k"), Value: []byte("v"), Timestamp: time.Now()}}})
	badCRC := slices.Clone(good)
	badCRC[len(badCRC)-1] ^= 1
	withPID := slices.Clone(good)
	binary.BigEndian.PutUint64(withPID[43:], 7) // producer id
	binary.BigEndian.PutUint32(withPID[17:], crc32.Checksum(withPID[21:], crc32c))
	tests := []struct {
		name  string
		batch kfake.PartitionBatch
		want  error
	}{
		{"a good batch", kfake.PartitionBatch{Partition: 1, Batch: good}, nil},
		{"a corrupt batch", kfake.PartitionBatch{Partition: 1, Batch: badCRC}, kerr.CorruptMessage},
		{"a batch with a producer id", kfake.PartitionBatch{Partition: 1, Batch: withPID}, kfake.ErrNotAppendable},
		{"an unknown partition", kfake.PartitionBatch{Partition: 9, Batch: good}, kfake.ErrUnknownPartition},
		{"a batch that is too large", kfake.PartitionBatch{Partition: 1, Batch: make([]byte, 2<<20)}, kerr.MessageTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := b.cluster.AppendPartitions(l.Topic(), []kfake.PartitionBatch{tc.batch})
			if err != nil {
				t.Fatal(err)
			}
			if !errors.Is(res[0].Err, tc.want) {
				t.Errorf("got %v, want %v", res[0].Err, tc.want)
			}
		})
	}
}

// Appends that share a round across topics, and more than a batch's
// worth of bytes to one partition, all land: a round appends to each
// topic, and splits a partition's records into batches the broker takes.
func TestInProcessRoundsSplitByTopicAndSize(t *testing.T) {
	b, l := startLogWith(t, true, EmbeddedConfig{DataDir: t.TempDir()}, Config{Partitions: 1, UsersPartitions: 1})
	defer b.Close()
	defer l.Close()
	big := strings.Repeat("x", 150<<10) // seven of them pass a batch's 1 MB
	var mu sync.Mutex
	offsets := map[string][]int64{}
	var wg sync.WaitGroup
	for s := range 16 {
		wg.Go(func() {
			for i := range 4 {
				e := sent("d:alice:bob", i)
				e.Body = big
				pos, err := l.Append(context.Background(), uuid.NewString(), e)
				if err != nil {
					t.Errorf("sender %d: %v", s, err)
					return
				}
				upos, err := l.AppendUser(context.Background(), uuid.NewString(), events.UserLoggedOut{Account: fmt.Sprintf("u%d", s)})
				if err != nil {
					t.Errorf("sender %d, users topic: %v", s, err)
					return
				}
				mu.Lock()
				offsets[l.Topic()] = append(offsets[l.Topic()], pos.Offset)
				offsets[l.UsersTopic()] = append(offsets[l.UsersTopic()], upos.Offset)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for topic, offs := range offsets {
		slices.Sort(offs)
		for i, o := range offs {
			if o != int64(i) {
				t.Fatalf("%s: offsets %v, want 0..%d each once", topic, offs, len(offs)-1)
			}
		}
	}
}

// While the embedded broker stalls (an fsync that does not return), the
// records appended in process wait in the producer up to its bound in
// bytes; past it an append fails at once (kgo.ErrMaxBuffered) instead of
// queueing without end. Once the broker goes on, what was queued lands
// and appends work again.
func TestInProcessQueueIsBoundedInBytes(t *testing.T) {
	b, l, hold, entered, release := stallingLog(t)
	defer b.Close()
	defer l.Close()
	defer release()
	l.producer.(*embeddedProducer).limit = 64 << 10

	hold.Store(true)
	first := make(chan error, 1)
	go func() {
		_, err := l.Append(context.Background(), uuid.NewString(), sent("d:alice:bob", 0))
		first <- err
	}()
	<-entered // the broker stalls in its fsync
	big := sent("d:alice:bob", 1)
	big.Body = strings.Repeat("x", 16<<10)
	var late []*events.LateAppend
	for len(late) < 100 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := l.Append(ctx, uuid.NewString(), big)
		cancel()
		var la *events.LateAppend
		if errors.As(err, &la) {
			late = append(late, la)
			continue
		}
		if !errors.Is(err, kgo.ErrMaxBuffered) {
			t.Fatalf("append %d on a stalled broker: %v, want it queued or refused for the bound", len(late)+1, err)
		}
		break
	}
	if n := len(late); n < 2 || n > 4 {
		t.Fatalf("%d records of 16 KiB queued under a 64 KiB bound", n)
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for _, la := range late {
		<-la.Pending.Done()
		if o := la.Pending.Outcome(); o.Err != nil {
			t.Errorf("a queued record after the stall: %v, want it landed", o.Err)
		}
	}
	if _, err := l.Append(context.Background(), uuid.NewString(), big); err != nil {
		t.Fatalf("an append after the stall: %v", err)
	}
}

// stallingLog starts a log that appends in process to an embedded broker
// with synced writes; once hold is set, the broker's next fsync of a
// segment closes entered and blocks until release is called. Defer
// release after the log's and the broker's closes (which wait for the
// stalled round), so that a test that fails mid-stall ends.
func stallingLog(t *testing.T) (b *Embedded, l *Log, hold *atomic.Bool, entered chan struct{}, release func()) {
	t.Helper()
	entered, hold = make(chan struct{}), new(atomic.Bool)
	stalled := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(stalled) }) }
	fault := func(path string) error {
		if hold.Load() && strings.HasSuffix(path, ".dat") && hold.CompareAndSwap(true, false) {
			close(entered)
			<-stalled
		}
		return nil
	}
	b, l = startLogWith(t, true, EmbeddedConfig{DataDir: t.TempDir(), SyncWrites: true, SyncFault: fault}, Config{Partitions: 2})
	return b, l, hold, entered, release
}
