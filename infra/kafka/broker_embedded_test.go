package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"
	"github.com/parley-chat/parley/events"
	"github.com/twmb/franz-go/pkg/kgo"
)

// With SyncWrites, an append is acknowledged only after its data and the
// directories of new files are synced; a failed fsync fails the append
// and the log's writability, and the record is not in the log — neither
// at once nor after a restart — so its offset goes to the next record.
func TestFailedFsyncFailsTheAppend(t *testing.T) {
	eachAppendPath(t, func(t *testing.T, inProcess bool) {
		dir := t.TempDir()
		var failing atomic.Bool
		var mu sync.Mutex
		synced := map[string]bool{}
		fault := func(path string) error {
			mu.Lock()
			synced[path] = true
			mu.Unlock()
			if failing.Load() && strings.HasSuffix(path, ".dat") {
				return errors.New("injected: input/output error")
			}
			return nil
		}
		start := func() (*Embedded, *Log) {
			return startLogWith(t, inProcess, EmbeddedConfig{DataDir: dir, SyncWrites: true, SyncFault: fault}, Config{Partitions: 1})
		}
		b, l := start()
		ctx := context.Background()
		first, err := l.Append(ctx, uuid.NewString(), sent("d:alice:bob", 0))
		if err != nil {
			t.Fatal(err)
		}
		pdir := filepath.Join(dir, "partitions", events.DefaultConversationTopic+"-0")
		mu.Lock()
		for _, want := range []string{filepath.Join(pdir, "0.dat"), pdir, filepath.Dir(pdir)} {
			if !synced[want] {
				t.Errorf("%s was not synced before the ack (synced: %v)", want, synced)
			}
		}
		mu.Unlock()

		failing.Store(true)
		if _, err := l.Append(ctx, uuid.NewString(), sent("d:alice:bob", 1)); err == nil {
			t.Fatal("an append was acknowledged though its fsync failed")
		}
		if l.Writable() == nil {
			t.Error("the log reports itself writable after a failed fsync")
		}
		failing.Store(false)
		var next events.Position
		for i := 0; ; i++ { // the producer may need a retry to recover its sequence
			if next, err = l.Append(ctx, uuid.NewString(), sent("d:alice:bob", 2)); err == nil {
				break
			}
			if i == 5 {
				t.Fatalf("appends fail after the disk recovered: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if l.Writable() != nil {
			t.Errorf("the log is not writable again after an append succeeded: %v", l.Writable())
		}
		if next.Offset != first.Offset+1 {
			t.Errorf("the append after the failed one is at offset %d, want %d", next.Offset, first.Offset+1)
		}
		_ = l.Close()
		b.Close()

		b, l = start()
		defer b.Close()
		defer l.Close()
		ends, err := l.EndOffsets(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if ends[0] != next.Offset+1 {
			t.Errorf("after a restart the log ends at %d, want %d", ends[0], next.Offset+1)
		}
	})
}

// A partition whose every record expired keeps its end across restarts —
// a clean one, and one without the broker's snapshot (as after a crash) —
// so that no offset, and no msgid, is handed out twice.
func TestTrimmedPartitionKeepsItsEnd(t *testing.T) {
	eachAppendPath(t, func(t *testing.T, inProcess bool) {
		dir := t.TempDir()
		start := func() (*Embedded, *Log) {
			return startLogWith(t, inProcess, EmbeddedConfig{DataDir: dir, RetentionCheck: 50 * time.Millisecond},
				Config{Partitions: 1, Retention: 200 * time.Millisecond, OwnRetention: true})
		}
		b, l := start()
		ctx := context.Background()
		var last events.Position
		for i := 0; i < 5; i++ {
			var err error
			if last, err = l.Append(ctx, uuid.NewString(), sent("d:alice:bob", i)); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			starts, err := l.StartOffsets()
			if err == nil && starts[0] > last.Offset {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("retention did not trim the partition: starts %v (%v)", starts, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		pdir := filepath.Join(dir, "partitions", events.DefaultConversationTopic+"-0")
		for _, restart := range []struct {
			name   string
			before func()
		}{
			{"a clean restart", func() {}},
			{"a restart without the snapshot", func() {
				if err := os.Remove(filepath.Join(pdir, "snapshot.json")); err != nil {
					t.Fatal(err)
				}
			}},
		} {
			_ = l.Close()
			b.Close()
			restart.before()
			b, l = start()
			ends, err := l.EndOffsets(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if ends[0] != last.Offset+1 {
				t.Errorf("after %s the trimmed partition ends at %d, want %d", restart.name, ends[0], last.Offset+1)
			}
		}
		defer b.Close()
		defer l.Close()
		pos, err := l.Append(ctx, uuid.NewString(), sent("d:alice:bob", 9))
		if err != nil {
			t.Fatal(err)
		}
		if pos.Offset <= last.Offset {
			t.Errorf("a new record got offset %d, at or below the trimmed %d", pos.Offset, last.Offset)
		}
	})
}

// The embedded broker's topics get the configured retention with small
// segments — retention frees disk a segment at a time — whether the topic
// is new or was kept forever before; forever again drops the small
// segments.
func TestEmbeddedRetentionSetsSmallSegments(t *testing.T) {
	dir := t.TempDir()
	b, err := StartEmbedded(EmbeddedConfig{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tests := []struct {
		name          string
		retention     time.Duration
		wantRetention string
		wantSegment   string
	}{
		{"a new topic kept forever", 0, "-1", "104857600"},
		{"a finite retention on the existing topic", time.Hour, "3600000", "16777216"},
		{"forever again", 0, "-1", "104857600"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Open(Config{Brokers: b.Addrs(), Partitions: 2, Retention: tc.retention, OwnRetention: true})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			got := topicConfigs(t, l, "retention.ms", "segment.bytes")
			if got["retention.ms"] != tc.wantRetention || got["segment.bytes"] != tc.wantSegment {
				t.Errorf("topic configuration %v, want retention.ms %s and segment.bytes %s", got, tc.wantRetention, tc.wantSegment)
			}
		})
	}
}

func topicConfigs(t *testing.T, l *Log, names ...string) map[string]string {
	t.Helper()
	sc, err := l.cfg.saramaConfig()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sarama.NewClusterAdmin(l.Brokers(), sc)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	results, err := admin.DescribeConfigs([]*sarama.ConfigResource{{Type: sarama.TopicResource, Name: l.Topic(), ConfigNames: names}}, sarama.DescribeConfigsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range results {
		for _, e := range r.Configs {
			out[e.Name] = e.Value
		}
	}
	return out
}

// A restart without the broker's snapshot, as after a crash, replays the
// segments for the transactions' state: a read_committed reader still
// skips an aborted transaction's records and reads a committed one's.
func TestCrashReplayKeepsAbortedTransactions(t *testing.T) {
	dir := t.TempDir()
	start := func() *Embedded {
		b, err := StartEmbedded(EmbeddedConfig{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := start()
	const topic = "txns"
	ctx := context.Background()
	admin, client := saramaAdmin(t, b.Addrs())
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	client.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...), kgo.TransactionalID("parley-test"),
		kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	for i, commit := range []kgo.TransactionEndTry{kgo.TryAbort, kgo.TryCommit, kgo.TryAbort, kgo.TryCommit} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			if err := cl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprintf("%d-%d", i, j))).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	b.Close()
	if err := os.Remove(filepath.Join(dir, "partitions", topic+"-0", "snapshot.json")); err != nil {
		t.Fatal(err)
	}
	b = start()
	defer b.Close()

	rd, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	want := []string{"1-0", "1-1", "1-2", "3-0", "3-1", "3-2"}
	var got []string
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for len(got) < len(want) {
		fs := rd.PollFetches(pctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("read %v, then: %v", got, err)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if !slices.Equal(got, want) {
		t.Fatalf("read_committed after a crash read %v, want %v", got, want)
	}
}

// A broker's line is logged under the words of its format before the
// first verb, the same for every partition and error, so that a
// throttled log counts a failure repeated for every batch as one kind.
func TestBrokerMessageIsTheFormatsWords(t *testing.T) {
	for format, want := range map[string]string{
		"persist batch %s-%d: %v":       "persist batch",
		"persist batch %s-%d: sync: %v": "persist batch",
		"%s":                            "embedded broker",
		"no verbs here":                 "no verbs here",
	} {
		if got := brokerMessage(format); got != want {
			t.Errorf("brokerMessage(%q) = %q, want %q", format, got, want)
		}
	}
}

// A failed append makes the log unwritable for WritableHold after it, not
// until an append succeeds: a process out of rotation for it would get no
// traffic to try one with.
func TestWritableLapsesAfterTheHold(t *testing.T) {
	l := &Log{cfg: Config{Logger: slog.New(slog.DiscardHandler)}}
	l.noteAppend(errors.New("injected: no space left on device"))
	if l.Writable() == nil {
		t.Fatal("writable right after a failed append")
	}
	l.healthMu.Lock()
	l.failedAt = time.Now().Add(-WritableHold)
	l.healthMu.Unlock()
	if err := l.Writable(); err != nil {
		t.Errorf("still unwritable %v after the last failure: %v", WritableHold, err)
	}
	l.noteAppend(errors.New("injected: again"))
	if l.Writable() == nil {
		t.Error("writable right after another failed append")
	}
}
