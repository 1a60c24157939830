package kafka

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections/runner"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// startSmallSegments starts an embedded broker on dir whose segments roll
// every 4 KiB, so that a read crosses sealed segments.
func startSmallSegments(t *testing.T, dir string) *Embedded {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir),
		kfake.BrokerConfigs(map[string]string{"log.segment.bytes": "4096"}))
	if err != nil {
		t.Fatal(err)
	}
	return &Embedded{cluster: c}
}

// produced writes n records to partition p with codec, several to a
// batch, each with the event header, another header and a timestamp of
// its own, every seventh without a value; it returns them as a source
// must hand them over.
func produced(t *testing.T, brokers []string, topic string, p int32, codec kgo.CompressionCodec, n int) []runner.RawRecord {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(codec), kgo.ProducerLinger(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	base := time.UnixMilli(1_700_000_000_000)
	rnd := rand.New(rand.NewPCG(uint64(p), 1))
	var wg sync.WaitGroup
	var want []runner.RawRecord
	var mu sync.Mutex
	var failed error
	for i := range n {
		r := &kgo.Record{Topic: topic, Partition: p, Key: []byte("k"), Timestamp: base.Add(time.Duration(i) * time.Second),
			Headers: []kgo.RecordHeader{{Key: "other", Value: []byte("x")}, {Key: events.MetadataName, Value: fmt.Appendf(nil, "Test%d.v1", i%3)}}}
		if i%7 != 0 {
			// Random bodies, so that compressed batches fill segments too.
			r.Value = fmt.Appendf(nil, "p%d-%d %x", p, i, rnd.Int64N(1<<62)*int64(i%20))
		}
		if i%10 == 0 {
			wg.Wait() // a batch of ten at a time, so that segments roll
		}
		wg.Add(1)
		cl.Produce(context.Background(), r, func(r *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = err
				return
			}
			want = append(want, runner.RawRecord{Offset: r.Offset, Name: string(r.Headers[1].Value), Payload: r.Value, Timestamp: r.Timestamp})
		})
	}
	wg.Wait()
	if failed != nil {
		t.Fatal(failed)
	}
	slices.SortFunc(want, func(a, b runner.RawRecord) int { return int(a.Offset - b.Offset) })
	return want
}

// readAll reads partitions [from, to) through src, in order per partition.
func readAll(t *testing.T, src runner.Source) map[int32][]runner.RawRecord {
	t.Helper()
	var mu sync.Mutex
	got := map[int32][]runner.RawRecord{}
	err := src.Consume(t.Context(), func(_ context.Context, b runner.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		got[b.Partition] = append(got[b.Partition], b.Records...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func sameRecords(t *testing.T, what string, got, want []runner.RawRecord) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Offset != w.Offset || g.Name != w.Name || string(g.Payload) != string(w.Payload) || !g.Timestamp.Equal(w.Timestamp) {
			t.Fatalf("%s, record %d: got %d %q %q %v, want %d %q %q %v", what, i,
				g.Offset, g.Name, g.Payload, g.Timestamp, w.Offset, w.Name, w.Payload, w.Timestamp)
		}
	}
}

// The in-process source hands over exactly what was produced, and what
// the Kafka-protocol source reads, whatever the batches' compression,
// across sealed segments, from any offset, and again after a restart.
func TestEmbeddedSourceReadsWhatWasProduced(t *testing.T) {
	dir := t.TempDir()
	b := startSmallSegments(t, dir)
	codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	l, err := Open(Config{Brokers: b.Addrs(), Partitions: int32(len(codecs))})
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	want := map[int32][]runner.RawRecord{}
	from, to, mid := map[int32]int64{}, map[int32]int64{}, map[int32]int64{}
	for i, codec := range codecs {
		p := int32(i)
		want[p] = produced(t, b.Addrs(), l.Topic(), p, codec, 400)
		from[p], to[p], mid[p] = 0, int64(len(want[p])), 37+int64(i)
	}
	viaKafka := readAll(t, l.RangeSource(from, to))
	check := func(what string) {
		t.Helper()
		got := readAll(t, b.RangeSource(l.Topic(), from, to))
		fromMid := readAll(t, b.RangeSource(l.Topic(), mid, to))
		for p := range want {
			sameRecords(t, fmt.Sprintf("%s, partition %d", what, p), got[p], want[p])
			sameRecords(t, fmt.Sprintf("%s, the Kafka source, partition %d", what, p), viaKafka[p], want[p])
			sameRecords(t, fmt.Sprintf("%s, partition %d from %d", what, p, mid[p]), fromMid[p], want[p][mid[p]:])
		}
	}
	check("before the restart")
	for p := range want {
		if segs, _ := filepath.Glob(filepath.Join(dir, "partitions", fmt.Sprintf("%s-%d", l.Topic(), p), "*.dat")); len(segs) < 3 {
			t.Fatalf("partition %d has %d segments: the reads cross too few", p, len(segs))
		}
	}
	_ = l.Close()
	b.Close()

	b = startSmallSegments(t, dir)
	defer b.Close()
	check("after the restart")
}

// A reader waiting at a partition's end stops when the broker closes,
// and says why unless its context ended too.
func TestEmbeddedSourceStopsWithTheBroker(t *testing.T) {
	b, l := startLog(t, true, t.TempDir())
	defer func() { _ = l.Close() }()
	ch := make(chan error, 1)
	go func() {
		ch <- b.RangeSource(l.Topic(), map[int32]int64{0: 0}, nil).Consume(context.Background(), func(context.Context, runner.Batch) error { return nil })
	}()
	time.Sleep(50 * time.Millisecond) // let it wait at the end
	b.Close()
	select {
	case err := <-ch:
		if err == nil {
			t.Fatal("a following read ended with no error when the broker stopped under it")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a following read did not stop with the broker")
	}
}

// FuzzDecodeBatches feeds the batch decoder bytes as a read of the log
// hands it, seeded with real batches: it never panics, records come in
// increasing offsets at or after the start, and a read from a later
// offset is the tail of a read from the start.
func FuzzDecodeBatches(f *testing.F) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		f.Fatal(err)
	}
	for _, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.SnappyCompression()} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerBatchCompression(codec), kgo.DefaultProduceTopic("t"))
		if err != nil {
			f.Fatal(err)
		}
		var recs []*kgo.Record
		for i := range 5 {
			recs = append(recs, &kgo.Record{Value: fmt.Appendf(nil, "v%d", i), Headers: []kgo.RecordHeader{{Key: events.MetadataName, Value: []byte("E.v1")}}})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			f.Fatal(err)
		}
		cl.Close()
	}
	r, err := c.ReadPartition("t", 0, 0, 1<<20, nil)
	c.Close()
	if err != nil || len(r.Batches) == 0 {
		f.Fatalf("no seed batches: %v", err)
	}
	f.Add(r.Batches, int64(0))
	f.Add(r.Batches, int64(3))
	f.Add(r.Batches[:len(r.Batches)/2], int64(0))
	f.Fuzz(func(t *testing.T, batches []byte, from int64) {
		from = max(from, 0)
		d := newBatchDecoder()
		all, next, err := d.decode(nil, batches, 0, -1)
		for i, r := range all {
			if i > 0 && r.Offset <= all[i-1].Offset {
				t.Fatalf("offsets %d then %d", all[i-1].Offset, r.Offset)
			}
		}
		if err == nil && len(all) > 0 && next <= all[len(all)-1].Offset {
			t.Fatalf("next %d is not past the last record %d", next, all[len(all)-1].Offset)
		}
		tail, _, err2 := d.decode(nil, batches, from, -1)
		if err != nil || err2 != nil {
			return
		}
		want := all[:0:0]
		for _, r := range all {
			if r.Offset >= from {
				want = append(want, r)
			}
		}
		if len(tail) != len(want) {
			t.Fatalf("from %d: %d records, want %d", from, len(tail), len(want))
		}
		for i := range want {
			if tail[i].Offset != want[i].Offset || string(tail[i].Payload) != string(want[i].Payload) || tail[i].Name != want[i].Name {
				t.Fatalf("from %d, record %d differs", from, i)
			}
		}
	})
}

// A reader that follows the log's end reads the newest batches from the
// broker's memory of them (the active segment's tail, about 128 KiB per
// partition): many times that, appended in batches of every size while
// the reader follows, reach it exactly as a read of the files from the
// start finds them.
func TestEmbeddedSourceFollowsPastTheTail(t *testing.T) {
	b, l := startLogWith(t, true, EmbeddedConfig{DataDir: t.TempDir()}, Config{Partitions: 1})
	defer b.Close()
	defer l.Close()

	ctx, cancel := context.WithCancel(t.Context())
	var mu sync.Mutex
	var followed []runner.RawRecord
	done := make(chan error, 1)
	go func() {
		done <- b.RangeSource(l.Topic(), map[int32]int64{0: 0}, nil).Consume(ctx, func(_ context.Context, bt runner.Batch) error {
			mu.Lock()
			defer mu.Unlock()
			followed = append(followed, bt.Records...)
			return nil
		})
	}()
	const senders, each = 6, 250
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				e := sent("g:tail", i)
				e.Body = strings.Repeat(fmt.Sprint(s), 100+(s*each+i)%700)
				if _, err := l.Append(context.Background(), uuid.NewString(), e); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(followed)
		mu.Unlock()
		if n >= senders*each {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the follower stopped after %d of %d records: %v", n, senders*each, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the follower read %d of %d records", n, senders*each)
		}
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	fromFiles := readAll(t, b.RangeSource(l.Topic(), map[int32]int64{0: 0}, map[int32]int64{0: senders * each}))
	mu.Lock()
	defer mu.Unlock()
	sameRecords(t, "the follower", followed, fromFiles[0])
}
