package kafka

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/parley-chat/parley/projections/runner"
	"github.com/parley-chat/parley/projections/runner/sourcetest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kafkaLog is the contract's log on the embedded broker: records are
// produced to exact partitions through the log's own producer (franz-go's,
// or in process).
type kafkaLog struct {
	l *Log
	b *Embedded
}

func (k kafkaLog) Append(t *testing.T, p int32, recs ...runner.RawRecord) {
	t.Helper()
	for _, r := range recs {
		rec := &kgo.Record{Topic: k.l.Topic(), Partition: p,
			Headers: []kgo.RecordHeader{{Key: "event", Value: []byte(r.Name)}}, Value: r.Payload}
		done := make(chan error, 1)
		k.l.producer.TryProduce(context.Background(), rec, func(_ *kgo.Record, err error) { done <- err })
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func (k kafkaLog) Range(_ *testing.T, from, to map[int32]int64) runner.Source {
	return k.l.RangeSource(from, to)
}
func (k kafkaLog) Group(_ *testing.T, name string) runner.Source { return k.l.GroupSource(name) }

func TestSourceContract(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T) sourcetest.Log { return newKafkaLog(t, false) })
}

// embeddedLog reads the embedded broker in process: a range only (the
// single node's reader has no consumer group); it appends in process too,
// as the single node does.
type embeddedLog struct{ kafkaLog }

func (e embeddedLog) Range(_ *testing.T, from, to map[int32]int64) runner.Source {
	return e.b.RangeSource(e.l.Topic(), from, to)
}
func (embeddedLog) Group(*testing.T, string) runner.Source { return nil }

func TestEmbeddedSourceContract(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T) sourcetest.Log { return embeddedLog{newKafkaLog(t, true).(kafkaLog)} })
}

// watermillLog reads through Watermill's subscriber: a consumer group
// only (it has no bounded range).
type watermillLog struct{ kafkaLog }

func (watermillLog) Range(*testing.T, map[int32]int64, map[int32]int64) runner.Source { return nil }

func (w watermillLog) Group(t *testing.T, name string) runner.Source {
	sub, err := w.l.NewSubscriber(SubscriberConfig{Group: name}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	src, err := WatermillSource(t.Context(), sub, w.l.Topic())
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestWatermillSourceContract(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T) sourcetest.Log { return watermillLog{newKafkaLog(t, false).(kafkaLog)} })
}

func newKafkaLog(t *testing.T, inProcess bool) sourcetest.Log {
	{
		b, err := StartEmbedded(EmbeddedConfig{DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		cfg := Config{Brokers: b.Addrs(), Partitions: sourcetest.Partitions}
		if inProcess {
			cfg.Embedded = b
		}
		l, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		return kafkaLog{l: l, b: b}
	}
}

// A group stopped by its context commits what it applied on its way out:
// the next member to read as the group starts after it, without waiting
// for a periodic commit, and nothing is read twice.
func TestGroupSourceCommitsWhenStopped(t *testing.T) {
	k := newKafkaLog(t, false).(kafkaLog)
	const perPartition = 5
	for p := int32(0); p < sourcetest.Partitions; p++ {
		for i := 0; i < perPartition; i++ {
			k.Append(t, p, runner.RawRecord{Name: "test.v1", Payload: []byte{byte(p), byte(i)}})
		}
	}
	var mu sync.Mutex
	seen := map[int32][]int64{}
	all := make(chan struct{})
	handle := func(_ context.Context, b runner.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range b.Records {
			seen[b.Partition] = append(seen[b.Partition], r.Offset)
		}
		n := 0
		for _, offs := range seen {
			n += len(offs)
		}
		if n == perPartition*sourcetest.Partitions {
			close(all)
		}
		return nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- k.l.GroupSource("stopped").Consume(ctx, handle) }()
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		t.Fatal("the group did not read every record")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Consume = %v, want context.Canceled", err)
	}
	sc, err := k.l.cfg.saramaConfig()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sarama.NewClusterAdmin(k.l.Brokers(), sc)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var parts []int32
	for p := int32(0); p < sourcetest.Partitions; p++ {
		parts = append(parts, p)
	}
	committed, err := admin.ListConsumerGroupOffsets("stopped", map[string][]int32{k.l.Topic(): parts})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if b := committed.GetBlock(k.l.Topic(), p); b == nil || b.Offset != perPartition {
			t.Fatalf("partition %d: committed %+v once the group stopped, want offset %d", p, b, perPartition)
		}
	}

	// Anything appended now is all the next member reads.
	k.Append(t, 1, runner.RawRecord{Name: "test.v1", Payload: []byte("after")})
	got := make(chan runner.Batch, 16)
	ctx2, cancel2 := context.WithCancel(t.Context())
	done2 := make(chan error, 1)
	go func() {
		done2 <- k.l.GroupSource("stopped").Consume(ctx2, func(_ context.Context, b runner.Batch) error {
			got <- b
			return nil
		})
	}()
	defer func() { cancel2(); <-done2 }()
	select {
	case b := <-got:
		if b.Partition != 1 || len(b.Records) != 1 || b.Records[0].Offset != perPartition {
			t.Fatalf("after a clean stop the group read %d records of partition %d from offset %d, want only the new record (1/%d)",
				len(b.Records), b.Partition, b.Records[0].Offset, perPartition)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the group did not read the new record")
	}
}
