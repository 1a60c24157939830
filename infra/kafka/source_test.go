package kafka

import (
	"context"
	"testing"

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
