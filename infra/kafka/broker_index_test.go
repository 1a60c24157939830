package kafka

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/parley-chat/parley/projections/runner"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The broker answers the same whether its index of record batches is in
// memory or mostly read back from the segments: reads from any offset,
// over the Kafka protocol and in process; offsets by timestamp; the log
// start after time and size retention; and all of it after a restart.
func TestBrokerIndexReadBack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cache int
	}{{"in memory", 0}, {"read back", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			testBrokerIndex(t, tc.cache)
		})
	}
}

func testBrokerIndex(t *testing.T, cache int) {
	const (
		n     = 1500 // one record a batch: segments of two chunks of the index
		more  = 300  // then appended, for a second trim of the same chunk
		timed = "timed"
		sized = "sized"
	)
	dir := t.TempDir()
	start := func() *Embedded { return startIndexed(t, dir, cache) }
	b := start()
	defer func() { b.Close() }()

	// The first half of timed is two hours old, the second ten minutes:
	// an hour's retention keeps the second half.
	now := time.Now().Truncate(time.Millisecond)
	stamp := func(i int) time.Time {
		if i < n/2 {
			return now.Add(-2*time.Hour + time.Duration(2*i)*time.Millisecond)
		}
		return now.Add(-10*time.Minute + time.Duration(2*i)*time.Millisecond)
	}
	admin, client := saramaAdmin(t, b.Addrs())
	defer client.Close()
	hour := strconv.Itoa(int(time.Hour.Milliseconds()))
	const keepBytes = 20000
	keep := strconv.Itoa(keepBytes)
	for topic, cfg := range map[string]map[string]*string{timed: {"retention.ms": &hour}, sized: {"retention.bytes": &keep}} {
		if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1, ConfigEntries: cfg}, false); err != nil {
			t.Fatal(err)
		}
	}
	var total int64 // records appended to each topic
	produce := func(count int) {
		t.Helper()
		var records []*kgo.Record
		for range count {
			for _, topic := range []string{timed, sized} {
				records = append(records, &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "v%05d", total), Timestamp: stamp(int(total))})
			}
			total++
		}
		produceEach(t, b.Addrs(), records)
	}
	produce(n)
	value := func(i int64) string { return fmt.Sprintf("v%05d", i) }

	// reads checks the records of topic from offset first on, read over
	// the Kafka protocol from first and in process from a spread of
	// offsets; and offsets by timestamp.
	reads := func(what, topic string, first int64) {
		t.Helper()
		viaKafka := consumeFrom(t, b.Addrs(), topic, first, total-first)
		for i, r := range viaKafka {
			if want := first + int64(i); r.Offset != want || string(r.Value) != value(want) || !r.Timestamp.Equal(stamp(int(want))) {
				t.Fatalf("%s, %s over Kafka: record %d is %d %q %v, want %d %q %v", what, topic, i, r.Offset, r.Value, r.Timestamp, want, value(want), stamp(int(want)))
			}
		}
		for from := first; from < total; from += 97 {
			got := readAll(t, b.RangeSource(topic, map[int32]int64{0: from}, map[int32]int64{0: min(from+5, total)}))[0]
			var want []runner.RawRecord
			for o := from; o < min(from+5, total); o++ {
				want = append(want, runner.RawRecord{Offset: o, Payload: []byte(value(o)), Timestamp: stamp(int(o))})
			}
			sameRecords(t, fmt.Sprintf("%s, %s in process from %d", what, topic, from), got, want)
		}
		// Before the log start, the first record still held.
		if got, err := client.GetOffset(topic, 0, stamp(0).UnixMilli()); err != nil || got != first {
			t.Fatalf("%s, %s: the offset for the oldest timestamp is %d (%v), want %d", what, topic, got, err, first)
		}
		for i := first; i < total; i += 89 {
			for _, ts := range []time.Time{stamp(int(i)), stamp(int(i)).Add(-time.Millisecond)} {
				got, err := client.GetOffset(topic, 0, ts.UnixMilli())
				if err != nil {
					t.Fatal(err)
				}
				if got != i {
					t.Fatalf("%s, %s: the offset for timestamp %v is %d, want %d", what, topic, ts, got, i)
				}
			}
		}
	}
	reads("before retention", timed, 0)
	reads("before retention", sized, 0)

	b.cluster.ApplyRetention()
	batchBytes := firstBatchBytes(t, filepath.Join(dir, "partitions", sized+"-0"))
	// Size retention drops the oldest batches while the log is over
	// keepBytes.
	wantStart := map[string]int64{timed: n / 2}
	sizedStart := func() int64 { return (total*batchBytes - keepBytes + batchBytes - 1) / batchBytes }
	wantStart[sized] = sizedStart()
	check := func(what string) {
		t.Helper()
		for _, topic := range []string{timed, sized} {
			client.RefreshMetadata(topic)
			got, err := client.GetOffset(topic, 0, sarama.OffsetOldest)
			if err != nil {
				t.Fatal(err)
			}
			if got != wantStart[topic] {
				t.Fatalf("%s, %s starts at %d, want %d", what, topic, got, wantStart[topic])
			}
			if size, want := logSize(t, admin, topic), (total-wantStart[topic])*batchBytes; topic == sized && size != want {
				t.Fatalf("%s, %s holds %d bytes, want %d", what, topic, size, want)
			}
			reads(what, topic, wantStart[topic])
		}
	}
	check("after retention")
	// The second trim removes the rest of the chunk the first cut into.
	produce(more)
	b.cluster.ApplyRetention()
	wantStart[sized] = sizedStart()
	check("after a second retention")

	stats := b.IndexStats()
	if cache > 0 && stats.ReadBack == 0 {
		t.Error("before the restart, no index entries were read back: the test did not exercise it")
	}
	client.Close()
	b.Close()
	// A crash can leave a segment without its .idx entries; the load
	// writes them again, and reads back from them.
	idx, err := filepath.Glob(filepath.Join(dir, "partitions", timed+"-0", "*.idx"))
	if err != nil || len(idx) < 2 {
		t.Fatalf("the timed topic has index files %v (%v), want two or more", idx, err)
	}
	slices.SortFunc(idx, func(a, b string) int { return cmp.Compare(len(a), len(b))*2 + strings.Compare(a, b) })
	if err := os.Remove(idx[0]); err != nil { // the oldest segment's, numerically
		t.Fatal(err)
	}
	b = start()
	admin, client = saramaAdmin(t, b.Addrs())
	defer client.Close()
	check("after a restart")

	stats = b.IndexStats()
	if cache > 0 {
		if stats.ReadBack == 0 {
			t.Error("after the restart, no index entries were read back: the test did not exercise it")
		}
		if stats.InMemory > kfake.MinIndexCacheBytes {
			t.Errorf("%d bytes of index entries in memory, above the %d allowed", stats.InMemory, kfake.MinIndexCacheBytes)
		}
	} else if stats.ReadBack != 0 {
		t.Errorf("%d chunks of index entries were read back, with room for all of them", stats.ReadBack)
	}
}

// A segment that cannot be read while the broker loads it (an I/O error;
// here a directory where the file was) fails the start and truncates
// nothing: once the file is back, every record is there.
func TestBrokerLoadReadErrorTruncatesNothing(t *testing.T) {
	const topic, n = "unreadable", 1500
	dir := t.TempDir()
	b := startIndexed(t, dir, 0)
	admin, client := saramaAdmin(t, b.Addrs())
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	_ = client.Close()
	records := make([]*kgo.Record, n)
	for i := range records {
		records[i] = &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "record %d", i)}
	}
	produceEach(t, b.Addrs(), records)
	b.Close()

	var segments []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(path, topic) && strings.HasSuffix(path, ".dat") {
			segments = append(segments, path)
		}
		return err
	})
	if err != nil || len(segments) < 2 {
		t.Fatalf("found segments %v (%v), want at least two", segments, err)
	}
	slices.Sort(segments)
	first := segments[0]
	saved := first + ".saved"
	if err := os.Rename(first, saved); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(first, 0o700); err != nil { // opens, but every read fails
		t.Fatal(err)
	}
	if c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir)); err == nil {
		c.Close()
		t.Fatal("the broker started on a segment it cannot read")
	}

	if err := os.Remove(first); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(saved, first); err != nil {
		t.Fatal(err)
	}
	b = startIndexed(t, dir, 0)
	defer b.Close()
	got := consumeFrom(t, b.Addrs(), topic, 0, n)
	for i, r := range got {
		if want := fmt.Sprintf("record %d", i); string(r.Value) != want || r.Offset != int64(i) {
			t.Fatalf("record %d after the failed start: offset %d %q, want %q", i, r.Offset, r.Value, want)
		}
	}
}

// startIndexed starts an embedded broker on dir whose segments roll every
// 48 KiB — about 650 one-record batches, two chunks of the index — with
// an index cache of cache bytes (the default if 0).
func startIndexed(t *testing.T, dir string, cache int) *Embedded {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.DataDir(dir),
		kfake.BrokerConfigs(map[string]string{"log.segment.bytes": "49152"})}
	if cache > 0 {
		opts = append(opts, kfake.IndexCacheBytes(cache))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return &Embedded{cluster: c}
}

// produceEach produces records to partition 0 of their topics, each in
// a batch of its own, in order; it does not change them.
func produceEach(t *testing.T, brokers []string, records []*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0), kgo.MaxBufferedRecords(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, r := range records {
		r := *r
		if err := cl.ProduceSync(context.Background(), &r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// saramaAdmin opens a Sarama client and admin on brokers; closing the
// client closes both.
func saramaAdmin(t *testing.T, brokers []string) (sarama.ClusterAdmin, sarama.Client) {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	return admin, client
}

// consumeFrom reads count records of topic's partition 0 from offset
// first over the Kafka protocol.
func consumeFrom(t *testing.T, brokers []string, topic string, first, count int64) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(first)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []*kgo.Record
	for int64(len(got)) < count {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("reading %s from %d: %v", topic, first, err)
		}
		got = append(got, fs.Records()...)
	}
	return got
}

// logSize is the size the broker reports of topic's partition 0.
func logSize(t *testing.T, admin sarama.ClusterAdmin, topic string) int64 {
	t.Helper()
	dirs, err := admin.DescribeLogDirs([]int32{0})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs[0] {
		for _, tp := range d.Topics {
			if tp.Topic == topic {
				for _, p := range tp.Partitions {
					if p.PartitionID == 0 {
						return p.Size
					}
				}
			}
		}
	}
	t.Fatalf("no log dir holds %s", topic)
	return 0
}

// firstBatchBytes is the size of the first record batch in the first
// segment file of partition directory pdir.
func firstBatchBytes(t *testing.T, pdir string) int64 {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(pdir, "*.dat"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no segment in %s: %v", pdir, err)
	}
	raw, err := os.ReadFile(segs[0])
	if err != nil || len(raw) < 12 {
		t.Fatalf("segment %s: %v", segs[0], err)
	}
	return 12 + int64(binary.BigEndian.Uint32(raw[8:12]))
}

// A broker that reads its index back answers as one that keeps it in
// memory, on the same records: offsets by timestamp when timestamps go
// back and forth, and a compacted topic's reads, before and after a
// restart.
func TestBrokerIndexReadBackAnswersAsInMemory(t *testing.T) {
	const (
		n         = 1500
		scattered = "scattered"
		compacted = "compacted"
	)
	base := time.Now().Add(-20 * time.Minute).Truncate(time.Millisecond) // within the default retention
	type broker struct {
		dir    string
		cache  int
		b      *Embedded
		client sarama.Client
	}
	start := func(k *broker) {
		k.b = startIndexed(t, k.dir, k.cache)
		_, k.client = saramaAdmin(t, k.b.Addrs())
	}
	stop := func(k *broker) {
		k.client.Close()
		k.b.Close()
	}
	memory, readBack := &broker{dir: t.TempDir()}, &broker{dir: t.TempDir(), cache: 1}
	rnd := rand.New(rand.NewPCG(7, 7))
	var records []*kgo.Record
	for i := range n {
		ts := base.Add(time.Duration(rnd.IntN(600_000)) * time.Millisecond) // back and forth over ten minutes
		records = append(records,
			&kgo.Record{Topic: scattered, Value: fmt.Appendf(nil, "s%d", i), Timestamp: ts},
			&kgo.Record{Topic: compacted, Key: fmt.Appendf(nil, "k%d", rnd.IntN(50)), Value: fmt.Appendf(nil, "c%d", i), Timestamp: ts})
	}
	policy := "compact"
	for _, k := range []*broker{memory, readBack} {
		start(k)
		defer func() { stop(k) }()
		admin, err := sarama.NewClusterAdminFromClient(k.client)
		if err != nil {
			t.Fatal(err)
		}
		for topic, cfg := range map[string]map[string]*string{scattered: nil, compacted: {"cleanup.policy": &policy}} {
			if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1, ConfigEntries: cfg}, false); err != nil {
				t.Fatal(err)
			}
		}
		produceEach(t, k.b.Addrs(), records)
		k.b.cluster.Compact()
	}

	same := func(what string) {
		t.Helper()
		found := 0
		for i := range 200 {
			ts := base.Add(time.Duration(i*3_000-1_000) * time.Millisecond).UnixMilli()
			want, err := memory.client.GetOffset(scattered, 0, ts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := readBack.client.GetOffset(scattered, 0, ts)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("%s: the offset for timestamp %d is %d read back, %d in memory", what, ts, got, want)
			}
			if got >= 0 {
				found++
			}
		}
		if found < 150 {
			t.Fatalf("%s: %d of 200 timestamps found an offset: the test reads too little", what, found)
		}
		var first, end [2]int64
		for i, k := range []*broker{memory, readBack} {
			k.client.RefreshMetadata(compacted)
			var err error
			if first[i], err = k.client.GetOffset(compacted, 0, sarama.OffsetOldest); err != nil {
				t.Fatal(err)
			}
			if end[i], err = k.client.GetOffset(compacted, 0, sarama.OffsetNewest); err != nil {
				t.Fatal(err)
			}
		}
		if first[0] != first[1] || end[0] != end[1] {
			t.Fatalf("%s: the compacted topic holds [%d, %d) read back, [%d, %d) in memory", what, first[1], end[1], first[0], end[0])
		}
		want := readAll(t, memory.b.RangeSource(compacted, map[int32]int64{0: first[0]}, map[int32]int64{0: end[0]}))[0]
		got := readAll(t, readBack.b.RangeSource(compacted, map[int32]int64{0: first[0]}, map[int32]int64{0: end[0]}))[0]
		if len(want) == 0 || len(want) >= n/2 {
			t.Fatalf("compaction kept %d of %d records: the test compacts too little", len(want), n)
		}
		sameRecords(t, what+", the compacted topic", got, want)
	}
	same("before the restart")
	stop(readBack)
	start(readBack)
	same("after the restart")
	if s := readBack.b.IndexStats(); s.ReadBack == 0 {
		t.Error("no index entries were read back: the test did not exercise it")
	}
}
