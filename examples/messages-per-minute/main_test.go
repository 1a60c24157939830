package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	testTopic      = "parley.conversations.v1"
	testPartitions = 4
)

// minute 18:20 UTC on 2026-11-26, in Unix milliseconds.
var t0 = time.Date(2026, 11, 26, 18, 20, 0, 0, time.UTC).UnixMilli()

func at(minute, second int) int64 { return t0 + int64(minute)*60_000 + int64(second)*1000 }

// ---------------------------------------------------------------------------
// Records shaped as docs/events.md describes them.

// partitionFor is Parley's placement: (fnv1a_32(key) & 0x7fffffff) % n.
func partitionFor(key string, n int32) int32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int32(h.Sum32()&0x7fffffff) % n
}

var uuidSeq int

func fakeUUID() string {
	uuidSeq++
	return fmt.Sprintf("01a218f7-581b-70c3-9dd4-%012x", uuidSeq)
}

// record builds a record on the conversation's partition with the three
// documented headers (in varying order: header order is not fixed).
func record(event, conv string, value []byte, uuid string) *kgo.Record {
	hs := []kgo.RecordHeader{
		{Key: "event", Value: []byte(event)},
		{Key: "key", Value: []byte(conv)},
		{Key: "_watermill_message_uuid", Value: []byte(uuid)},
	}
	if uuidSeq%2 == 0 {
		slices.Reverse(hs)
	}
	return &kgo.Record{
		Topic:     testTopic,
		Partition: partitionFor(conv, testPartitions),
		Key:       []byte(conv),
		Value:     value,
		Headers:   hs,
	}
}

func sent(conv string, serverTime int64) *kgo.Record {
	id := fakeUUID()
	v, _ := json.Marshal(map[string]any{
		"messageId":     id,
		"clientMsgId":   "c-" + id[len(id)-4:],
		"conversation":  conv,
		"senderAccount": "bob",
		"senderDevice":  "phone",
		"kind":          "text",
		"body":          "hi",
		"serverTime":    serverTime,
	})
	return record("MessageSent.v1", conv, v, id)
}

const (
	alice2bob = "d:alice:bob"
	bob2carol = "d:bob:carol"
	friends   = "g:g08e2b7c645e24b2aa6bd8a1f672947bf"
)

// ---------------------------------------------------------------------------
// The aggregator alone: when minutes are reported.

func add(a *aggregator, r *kgo.Record, p int32, off int64) {
	r.Partition, r.Offset = p, off
	a.add(r)
}

func TestAggregatorLive(t *testing.T) {
	a := newAggregator(t.Logf)
	add(a, sent(alice2bob, at(0, 10)), 0, 0)
	a.fetched(0, 1)
	if got := a.flush(false); len(got) != 0 {
		t.Fatalf("minute reported before it ended: %+v", got)
	}
	add(a, sent(friends, at(0, 30)), 1, 0)
	a.fetched(1, 1)
	if got := a.flush(false); len(got) != 0 {
		t.Fatalf("minute reported before it ended: %+v", got)
	}
	add(a, sent(alice2bob, at(1, 0)), 0, 1) // the next minute starts
	a.fetched(0, 2)
	want := []line{
		{Minute: "2026-11-26T18:20:00Z", Kind: "direct", Messages: 1},
		{Minute: "2026-11-26T18:20:00Z", Kind: "group", Messages: 1},
	}
	if got := a.flush(false); !slices.Equal(got, want) {
		t.Fatalf("at 18:21 got %+v, want %+v", got, want)
	}
	// Partition 0's record at offset 1 is not printed yet: commit up to it.
	if got := a.commitable(); got[0] != 1 || got[1] != 1 {
		t.Fatalf("commitable %v, want p0=1 p1=1", got)
	}

	// A message of 18:20 that comes after 18:20 was reported is late.
	add(a, sent(friends, at(0, 59)), 1, 1)
	a.fetched(1, 2)
	want = []line{{Minute: "2026-11-26T18:20:00Z", Kind: "group", Messages: 1, Late: true}}
	if got := a.flush(false); !slices.Equal(got, want) {
		t.Fatalf("late: got %+v, want %+v", got, want)
	}
	want = []line{{Minute: "2026-11-26T18:21:00Z", Kind: "direct", Messages: 1}}
	if got := a.flush(true); !slices.Equal(got, want) {
		t.Fatalf("final: got %+v, want %+v", got, want)
	}
	if got := a.commitable(); got[0] != 2 || got[1] != 2 {
		t.Fatalf("commitable after final flush %v, want p0=2 p1=2", got)
	}
	if s := a.stats; s.Messages != 4 || s.Late != 1 || s.Errors != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestAggregatorReplayWaitsForSlowestPartition(t *testing.T) {
	a := newAggregator(t.Logf)
	// Both partitions have a backlog (high watermark 100).
	add(a, sent(alice2bob, at(0, 10)), 0, 0)
	add(a, sent(alice2bob, at(2, 0)), 0, 1)
	a.fetched(0, 100)
	add(a, sent(friends, at(1, 0)), 1, 0)
	a.fetched(1, 100)
	// Partition 1 is only at 18:21, so 18:21 is not over for it.
	want := []line{{Minute: "2026-11-26T18:20:00Z", Kind: "direct", Messages: 1}}
	if got := a.flush(false); !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	add(a, sent(friends, at(1, 30)), 1, 1)
	add(a, sent(friends, at(3, 0)), 1, 2)
	a.fetched(1, 3) // caught up: partition 0 (at 18:22) now holds the watermark
	want = []line{{Minute: "2026-11-26T18:21:00Z", Kind: "group", Messages: 2}}
	if got := a.flush(false); !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if a.stats.Late != 0 {
		t.Fatalf("replay produced late messages: %+v", a.stats)
	}
}

func TestAggregatorSkipsUnknownAndCountsErrors(t *testing.T) {
	var warnings []string
	a := newAggregator(func(f string, args ...any) { warnings = append(warnings, fmt.Sprintf(f, args...)) })
	noHeader := sent(alice2bob, at(0, 1))
	noHeader.Headers = nil
	for i, r := range []*kgo.Record{
		sent(alice2bob, at(0, 1)),
		record("MessageSent.v2", alice2bob, []byte(`{"whatever":true}`), fakeUUID()),
		noHeader,
		record("GroupCreated.v1", friends, []byte(`{"group":"g08e2b7c645e24b2aa6bd8a1f672947bf","name":"friends","owner":"alice","members":["alice","bob"],"at":1795715193263}`), fakeUUID()),
		record("MessageSent.v1", alice2bob, []byte(`{"conversation":"d:alice:bob","serverTime":`), fakeUUID()),
		record("MessageSent.v1", alice2bob, []byte(`{"conversation":"d:alice:bob","serverTime":"yesterday"}`), fakeUUID()),
		record("MessageSent.v1", alice2bob, []byte(`{"conversation":"x:alice","serverTime":1795715192859}`), fakeUUID()),
		record("MessageSent.v1", alice2bob, []byte(`{"conversation":"d:alice:bob"}`), fakeUUID()),
		record("MessageSent.v1", alice2bob, []byte(`null`), fakeUUID()),
		// A newer optional field is ignored.
		record("MessageSent.v1", alice2bob, []byte(`{"conversation":"d:alice:bob","serverTime":`+fmt.Sprint(at(0, 2))+`,"newField":[1]}`), fakeUUID()),
	} {
		add(a, r, 0, int64(i))
	}
	want := stats{Records: 10, Messages: 2, Other: 1, Skipped: 2, Errors: 5}
	if a.stats != want {
		t.Fatalf("stats %+v, want %+v", a.stats, want)
	}
	if len(warnings) != 5 {
		t.Fatalf("want one warning per error, got %q", warnings)
	}
	wantLines := []line{{Minute: "2026-11-26T18:20:00Z", Kind: "direct", Messages: 2}}
	if got := a.flush(true); !slices.Equal(got, wantLines) {
		t.Fatalf("got %+v, want %+v", got, wantLines)
	}
	if got := a.commitable(); got[0] != 10 {
		t.Fatalf("commitable %v: skipped and bad records must not hold the offset", got)
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.brokers, []string{"127.0.0.1:9092"}) || cfg.topic != testTopic ||
		cfg.group != "analytics.messages-per-minute" || cfg.from != "earliest" || cfg.duration != 0 {
		t.Fatalf("defaults: %+v", cfg)
	}
	cfg, err = parseFlags([]string{"--brokers", "a:1, b:2", "--from", "latest", "--duration", "90s"}, io.Discard)
	if err != nil || !slices.Equal(cfg.brokers, []string{"a:1", "b:2"}) || cfg.from != "latest" || cfg.duration != 90*time.Second {
		t.Fatalf("got %+v, %v", cfg, err)
	}
	for _, bad := range [][]string{{"--from", "middle"}, {"--group", "parley.projections"}, {"--brokers", ""}, {"--duration", "-1s"}, {"extra"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

// ---------------------------------------------------------------------------
// The whole consumer against an in-process Kafka-protocol broker.

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func startBroker(t *testing.T) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(testPartitions, testTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func produce(t *testing.T, ctx context.Context, brokers []string, rs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// consume runs the consumer until done reports true for its stats, then
// stops it and returns its output lines and final stats.
func consume(t *testing.T, ctx context.Context, cfg config, done func(stats) bool, tick func()) ([]line, stats) {
	t.Helper()
	var out bytes.Buffer
	c := newConsumer(cfg, &out, log.New(testLog{t}, "", 0))
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- c.run(runCtx) }()

	for !done(c.Stats()) {
		select {
		case <-ctx.Done():
			stop()
			<-errc
			t.Fatalf("timed out; stats %+v", c.Stats())
		case <-time.After(20 * time.Millisecond):
		}
		if tick != nil {
			tick()
		}
	}
	stop()
	if err := <-errc; err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("output:\n%s", out.String())
	var lines []line
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var l line
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("output line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines, c.Stats()
}

// sums adds up the lines per "minute kind" (late lines add to the others).
func sums(lines []line) map[string]int {
	m := map[string]int{}
	for _, l := range lines {
		m[l.Minute+" "+l.Kind] += l.Messages
	}
	return m
}

func TestConsumerAgainstBroker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers := startBroker(t)

	records := []*kgo.Record{
		record("GroupCreated.v1", friends, []byte(`{"group":"g08e2b7c645e24b2aa6bd8a1f672947bf","name":"friends","owner":"alice","members":["alice","bob","carol"],"at":`+fmt.Sprint(at(0, 1))+`}`), fakeUUID()),
		sent(alice2bob, at(0, 5)),
		sent(alice2bob, at(0, 10)),
		record("MessageSent.v2", alice2bob, []byte(`{"messageId":"x","conversation":"d:alice:bob","serverTime":`+fmt.Sprint(at(0, 20))+`}`), fakeUUID()), // unknown: skip
		sent(friends, at(0, 30)),
		record("MessageSent.v1", bob2carol, []byte(`{"conversation":"d:bob:carol","serverTime":`), fakeUUID()), // malformed: error
		sent(bob2carol, at(0, 59)+999),
		record("GroupMembersAdded.v1", friends, []byte(`{"group":"g08e2b7c645e24b2aa6bd8a1f672947bf","by":"bob","accounts":["dave"],"at":`+fmt.Sprint(at(1, 0))+`}`), fakeUUID()),
		sent(friends, at(1, 0)),
		sent(alice2bob, at(1, 30)),
		sent(friends, at(1, 45)),
		sent(bob2carol, at(3, 0)), // nothing at 18:22
	}
	produce(t, ctx, brokers, records...)

	cfg := config{brokers: brokers, topic: testTopic, group: "analytics.messages-per-minute.test", from: "earliest"}
	lines, st := consume(t, ctx, cfg, func(s stats) bool { return s.Records >= len(records) }, nil)

	wantStats := stats{Records: 12, Messages: 8, Other: 2, Skipped: 1, Errors: 1, Late: st.Late}
	if st != wantStats {
		t.Fatalf("stats %+v, want %+v", st, wantStats)
	}
	want := map[string]int{
		"2026-11-26T18:20:00Z direct": 3,
		"2026-11-26T18:20:00Z group":  1,
		"2026-11-26T18:21:00Z direct": 1,
		"2026-11-26T18:21:00Z group":  2,
		"2026-11-26T18:23:00Z direct": 1,
	}
	got := sums(lines)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
	for i := 1; i < len(lines); i++ {
		if !lines[i].Late && lines[i].Minute < lines[i-1].Minute {
			t.Fatalf("lines out of minute order: %+v", lines)
		}
	}

	// The group committed on exit: a second run reads only what is new.
	produce(t, ctx, brokers, sent(alice2bob, at(3, 20)))
	lines, st = consume(t, ctx, cfg, func(s stats) bool { return s.Records >= 1 }, nil)
	if st.Records != 1 {
		t.Fatalf("second run read %d records, want only the new one", st.Records)
	}
	if want := []line{{Minute: "2026-11-26T18:23:00Z", Kind: "direct", Messages: 1}}; !slices.Equal(lines, want) {
		t.Fatalf("second run: %+v, want %+v", lines, want)
	}

	// A new group with --from latest ignores the backlog. Keep producing
	// until it has joined and sees something.
	cfg.group, cfg.from = "analytics.messages-per-minute.latest", "latest"
	lines, st = consume(t, ctx, cfg, func(s stats) bool { return s.Records >= 1 }, func() {
		produce(t, ctx, brokers, sent(friends, at(10, 0)))
	})
	for _, l := range lines {
		if l.Minute != "2026-11-26T18:30:00Z" || l.Kind != "group" {
			t.Fatalf("--from latest read old records: %+v", lines)
		}
	}
	if st.Messages != st.Records {
		t.Fatalf("--from latest: stats %+v", st)
	}
}
