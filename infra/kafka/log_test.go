package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/google/uuid"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/faultnet"
)

// appendPaths are the ways a log appends to the embedded broker: over
// the Kafka protocol, as to any cluster, and in process (Config.Embedded),
// as the single node does.
var appendPaths = []struct {
	name      string
	inProcess bool
}{{"appends=kafka", false}, {"appends=inprocess", true}}

// eachAppendPath runs test once per append path.
func eachAppendPath(t *testing.T, test func(t *testing.T, inProcess bool)) {
	for _, p := range appendPaths {
		t.Run(p.name, func(t *testing.T) { test(t, p.inProcess) })
	}
}

func startLog(t testing.TB, inProcess bool, dir string) (*Embedded, *Log) {
	t.Helper()
	return startLogWith(t, inProcess, EmbeddedConfig{DataDir: dir}, Config{Partitions: 4})
}

// startLogWith starts an embedded broker with ecfg and opens the log on
// it with cfg (its brokers filled in), appending in process if inProcess.
func startLogWith(t testing.TB, inProcess bool, ecfg EmbeddedConfig, cfg Config) (*Embedded, *Log) {
	t.Helper()
	b, err := StartEmbedded(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Brokers = b.Addrs()
	if inProcess {
		cfg.Embedded = b
	}
	l, err := Open(cfg)
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	return b, l
}

func sent(conv string, i int) events.MessageSent {
	return events.MessageSent{
		MessageID: uuid.NewString(), ClientMsgID: fmt.Sprintf("c%d", i), Conversation: conv,
		SenderAccount: "alice", SenderDevice: "phone", Kind: "text", Body: fmt.Sprint(i), ServerTime: time.Now().UnixMilli(),
	}
}

// The log is the sequencer: appends to one conversation get increasing
// offsets in one partition, a subscriber sees the same positions, and all of
// it survives a restart of the embedded broker on the same data dir.
func TestLogAssignsPositionsAndPersists(t *testing.T) {
	eachAppendPath(t, func(t *testing.T, inProcess bool) {
		dir := t.TempDir()
		b, l := startLog(t, inProcess, dir)
		convs := []string{"d:alice:bob", "g:team", "d:alice:carol"}
		want := map[string][]events.Position{}
		for i := 0; i < 30; i++ {
			c := convs[i%len(convs)]
			pos, err := l.Append(context.Background(), uuid.NewString(), sent(c, i))
			if err != nil {
				t.Fatal(err)
			}
			if pos.Partition != events.PartitionFor(c, 4) {
				t.Fatalf("%s landed in partition %d, want %d", c, pos.Partition, events.PartitionFor(c, 4))
			}
			if prev := want[c]; len(prev) > 0 && prev[len(prev)-1].Offset >= pos.Offset {
				t.Fatalf("offsets not increasing in %s: %v then %v", c, prev[len(prev)-1], pos)
			}
			want[c] = append(want[c], pos)
		}
		_ = l.Close()
		b.Close()

		b, l = startLog(t, inProcess, dir)
		defer b.Close()
		defer l.Close()
		sub, err := l.NewSubscriber(SubscriberConfig{}, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		ch, err := sub.Subscribe(ctx, l.Topic())
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]events.Position{}
		for n := 0; n < 30; n++ {
			select {
			case m := <-ch:
				e, err := events.Decode(m.Metadata.Get(events.MetadataName), m.Payload)
				if err != nil {
					t.Fatal(err)
				}
				p, _ := wkafka.MessagePartitionFromCtx(m.Context())
				o, _ := wkafka.MessagePartitionOffsetFromCtx(m.Context())
				got[e.Key()] = append(got[e.Key()], events.Position{Partition: p, Offset: o})
				m.Ack()
			case <-ctx.Done():
				t.Fatalf("read %d of 30 records after restart", n)
			}
		}
		for _, c := range convs {
			if fmt.Sprint(got[c]) != fmt.Sprint(want[c]) {
				t.Errorf("%s: read %v, appended %v", c, got[c], want[c])
			}
		}
	})
}

// Concurrent end-offset reads share requests, yet each sees every record
// acknowledged before it asked.
func TestEndOffsetSeesEveryEarlierAck(t *testing.T) {
	eachAppendPath(t, func(t *testing.T, inProcess bool) {
		b, l := startLog(t, inProcess, t.TempDir())
		defer b.Close()
		defer l.Close()
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					pos, err := l.Append(context.Background(), uuid.NewString(), sent("d:alice:bob", i))
					if err != nil {
						t.Error(err)
						return
					}
					end, err := l.EndOffset(context.Background(), pos.Partition)
					if err != nil || end <= pos.Offset {
						t.Errorf("end %d after an ack at %d (%v)", end, pos.Offset, err)
						return
					}
				}
			}()
		}
		wg.Wait()
	})
}

// With the broker gone, an append fails by itself (after AppendTimeout)
// — the caller's context need not end — unless its request went out on
// the connection the broker dropped: then the broker may hold it, the
// producer waits for the answer, and the caller's deadline ends the wait
// (events.LateAppend) until the broker is back and the record lands.
// Either way the log reports itself unwritable; once the broker is back
// on the same address, appends work and the log is writable again. A log
// that appends in process lives and dies with its broker (the node
// starts and stops them together): it fails at once, and a new broker
// gets a new log.
func TestAppendFailsWhileTheBrokerIsDown(t *testing.T) {
	eachAppendPath(t, func(t *testing.T, inProcess bool) {
		dir := t.TempDir()
		b, l := startLogWith(t, inProcess, EmbeddedConfig{DataDir: dir}, Config{Partitions: 4, AppendTimeout: time.Second})
		defer l.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := l.Append(ctx, uuid.NewString(), sent("d:alice:bob", 0)); err != nil {
			t.Fatal(err)
		}
		addr := b.Addrs()[0]
		b.Close()
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := l.Append(actx, uuid.NewString(), sent("d:alice:bob", 1))
		acancel()
		var late *events.LateAppend
		switch {
		case errors.As(err, &late):
			if inProcess {
				t.Fatalf("an append in process waited on a closed broker: %v", err)
			}
		case err == nil:
			t.Fatal("an append with the broker down succeeded")
		}
		if l.Writable() == nil {
			t.Error("the log reports itself writable with the broker down")
		}
		if inProcess {
			if _, err := l.Append(ctx, uuid.NewString(), sent("d:alice:bob", 2)); err == nil {
				t.Error("an append in process succeeded on a closed broker")
			}
			return
		}
		b, err = StartEmbedded(EmbeddedConfig{DataDir: dir, Addr: addr})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		for i := 0; ; i++ {
			if _, err = l.Append(ctx, uuid.NewString(), sent("d:alice:bob", 2)); err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("appends fail after the broker came back: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := l.Writable(); err != nil {
			t.Errorf("the log is not writable again after an append succeeded: %v", err)
		}
		if late != nil {
			<-late.Pending.Done() // it settled in order, before the append above
			if o := late.Pending.Outcome(); o.Err != nil {
				t.Logf("the append under way when the broker went: %v", o.Err)
			}
		}
	})
}

// A record is what Sarama consumers and Watermill subscribers read: the
// conversation as key, the encoded event as value, and the message UUID,
// the event name and the key as headers, nothing else.
func TestRecordFormat(t *testing.T) {
	eachAppendPath(t, func(t *testing.T, inProcess bool) {
		b, l := startLog(t, inProcess, t.TempDir())
		defer b.Close()
		defer l.Close()
		e, id := sent("d:alice:bob", 0), uuid.NewString()
		pos, err := l.Append(context.Background(), id, e)
		if err != nil {
			t.Fatal(err)
		}
		var got *sarama.ConsumerMessage
		err = ConsumePartitions(context.Background(), saramaConsumer(t, l), l.Topic(), map[int32]int64{pos.Partition: pos.Offset}, map[int32]int64{pos.Partition: pos.Offset + 1},
			func(m *sarama.ConsumerMessage) error { got = m; return nil })
		if err != nil || got == nil {
			t.Fatalf("cannot read the record back: %v", err)
		}
		payload, err := events.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Key) != e.Key() || string(got.Value) != string(payload) {
			t.Errorf("record key %q value %s, want %q %s", got.Key, got.Value, e.Key(), payload)
		}
		headers := map[string]string{}
		for _, h := range got.Headers {
			headers[string(h.Key)] = string(h.Value)
		}
		want := map[string]string{uuidHeader: id, events.MetadataName: e.EventName(), MetadataKey: e.Key()}
		if fmt.Sprint(headers) != fmt.Sprint(want) || len(got.Headers) != len(want) {
			t.Errorf("record headers %v, want %v", headers, want)
		}
	})
}

// Opening a partition while the shared connection is closed under it
// (Sarama closes it on any failed request of the client) is tried again,
// so the read still starts; an error that will not pass fails at once.
func TestConsumePartitionsRetriesAClosedConnection(t *testing.T) {
	b, l := startLog(t, false, t.TempDir())
	defer b.Close()
	defer l.Close()
	pos, err := l.Append(context.Background(), uuid.NewString(), sent("d:alice:bob", 0))
	if err != nil {
		t.Fatal(err)
	}
	consumer := saramaConsumer(t, l)
	from, to := map[int32]int64{pos.Partition: pos.Offset}, map[int32]int64{pos.Partition: pos.Offset + 1}

	flaky := &failingOpens{Consumer: consumer, err: sarama.ErrNotConnected, left: 2}
	read := 0
	if err := ConsumePartitions(context.Background(), flaky, l.Topic(), from, to, func(*sarama.ConsumerMessage) error { read++; return nil }); err != nil || read != 1 {
		t.Fatalf("after two closed connections: %d records, %v; want the record", read, err)
	}
	if flaky.tries != 3 {
		t.Errorf("%d opens, want 3", flaky.tries)
	}

	lasting := &failingOpens{Consumer: consumer, err: sarama.ErrOffsetOutOfRange, left: 1}
	err = ConsumePartitions(context.Background(), lasting, l.Topic(), from, to, func(*sarama.ConsumerMessage) error { return nil })
	if !errors.Is(err, sarama.ErrOffsetOutOfRange) || lasting.tries != 1 {
		t.Errorf("an offset out of range: %v after %d opens, want it after one", err, lasting.tries)
	}
}

// saramaConsumer is a Sarama consumer of l's brokers with l's
// configuration, closed when the test ends.
func saramaConsumer(t *testing.T, l *Log) sarama.Consumer {
	t.Helper()
	sc, err := l.cfg.saramaConfig()
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := sarama.NewConsumer(l.Brokers(), sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = consumer.Close() })
	return consumer
}

// failingOpens is a consumer whose first left opens fail with err.
type failingOpens struct {
	sarama.Consumer
	err         error
	left, tries int
}

func (f *failingOpens) ConsumePartition(topic string, p int32, offset int64) (sarama.PartitionConsumer, error) {
	f.tries++
	if f.left > 0 {
		f.left--
		return nil, f.err
	}
	return f.Consumer.ConsumePartition(topic, p, offset)
}

// An append after the log closed fails, and says so.
func TestAppendAfterCloseFails(t *testing.T) {
	eachAppendPath(t, func(t *testing.T, inProcess bool) {
		b, l := startLog(t, inProcess, t.TempDir())
		defer b.Close()
		if _, err := l.Append(context.Background(), uuid.NewString(), sent("d:alice:bob", 0)); err != nil {
			t.Fatal(err)
		}
		_ = l.Close()
		if _, err := l.Append(context.Background(), uuid.NewString(), sent("d:alice:bob", 1)); err == nil {
			t.Error("an append after Close succeeded")
		}
	})
}

// An append whose caller stops waiting on a cut broker path is not over:
// the error is an events.LateAppend, and once the path heals the record
// lands and its outcome says where — the position a reader finds it at.
// Its request is under way, so the producer does not fail it when
// AppendTimeout or its request's timeout (20 s) passes, as the bytes may
// yet reach the broker: an outcome is only what happened.
func TestLateAppendSettlesWhenThePathHeals(t *testing.T) {
	b, err := StartEmbedded(EmbeddedConfig{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	path, err := faultnet.Listen(b.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer path.Close()
	l, err := Open(Config{Brokers: []string{path.Addr()}, Partitions: 4, AppendTimeout: 3 * time.Second,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, path.Addr())
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := l.Append(ctx, uuid.NewString(), sent("d:alice:bob", 0)); err != nil {
		t.Fatal(err)
	}

	late := func(i int) *events.LateAppend {
		t.Helper()
		actx, acancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer acancel()
		_, err := l.Append(actx, uuid.NewString(), sent("d:alice:bob", i))
		var la *events.LateAppend
		if !errors.As(err, &la) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("an append given up on a cut path: %v, want a LateAppend of the deadline", err)
		}
		return la
	}

	path.Cut()
	la := late(1)
	select {
	case <-la.Pending.Done():
		t.Fatalf("settled on a cut path: %+v", la.Pending.Outcome())
	case <-time.After(500 * time.Millisecond):
	}
	heard := make(chan events.AppendOutcome, 2)
	la.Pending.Then(func(o events.AppendOutcome) { heard <- o })
	la.Pending.Then(func(o events.AppendOutcome) { heard <- o }) // only the first counts
	path.Heal()
	var o events.AppendOutcome
	select {
	case o = <-heard:
	case <-ctx.Done():
		t.Fatal("the late append never settled after the heal")
	}
	if o.Err != nil {
		t.Fatalf("the late append after the heal: %v, want it landed", o.Err)
	}
	end, err := l.EndOffset(ctx, o.Pos.Partition)
	if err != nil || end != o.Pos.Offset+1 {
		t.Fatalf("end offset %d (%v) after the late record at %d", end, err, o.Pos.Offset)
	}
	var body string
	err = ConsumePartitions(ctx, saramaConsumer(t, l), l.Topic(), map[int32]int64{o.Pos.Partition: o.Pos.Offset}, map[int32]int64{o.Pos.Partition: o.Pos.Offset + 1},
		func(m *sarama.ConsumerMessage) error {
			e, err := events.Decode(events.MessageSentV1, m.Value)
			if err == nil {
				body = e.(events.MessageSent).Body
			}
			return err
		})
	if err != nil || body != "1" {
		t.Fatalf("the record at the late append's position: body %q (%v), want the late one's", body, err)
	}
	select {
	case extra := <-heard:
		t.Fatalf("Then called twice: %+v", extra)
	case <-time.After(100 * time.Millisecond):
	}

	path.Cut()
	la = late(2)
	select {
	case <-la.Pending.Done():
		t.Fatalf("settled on a path cut past AppendTimeout and the request's timeout: %+v", la.Pending.Outcome())
	case <-time.After(22 * time.Second):
	}
	path.Heal()
	select {
	case <-la.Pending.Done():
	case <-ctx.Done():
		t.Fatal("the late append never settled after the second heal")
	}
	if o := la.Pending.Outcome(); o.Err != nil || o.Pos.Offset != end {
		t.Fatalf("the second late append: %+v, want it landed at %d", o, end)
	}
	if after, err := l.EndOffset(ctx, o.Pos.Partition); err != nil || after != end+1 {
		t.Fatalf("end offset %d (%v) after the second late record, want %d: it landed once", after, err, end+1)
	}
}
