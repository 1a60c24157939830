package kafka

import (
	"context"
	"errors"
	"hash/crc32"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// maxBatchBytes bounds a record batch the embedded producer builds, as
// franz-go's producer bounds its batches (ProducerBatchMaxBytes): the
// broker's max.message.bytes, 1,000,012 by default.
const maxBatchBytes = 1000012

// maxBufferedBytes bounds the records a producer holds that the broker
// has not taken yet, as kgo.MaxBufferedBytes bounds franz-go's: while a
// broker stalls, appends past it fail at once (kgo.ErrMaxBuffered)
// instead of queueing without end — their callers gave up long before.
const maxBufferedBytes = 64 << 20

// errProducerClosed fails an append made after the log closed.
var errProducerClosed = errors.New("the log is closed")

// embeddedProducer appends to the embedded broker of this process in
// process (kfake's AppendPartitions), for a Log whose brokers are it:
// the same records, in the same record batches, as franz-go's producer
// would send, without the Kafka protocol, the producer's goroutines or a
// loopback connection.
//
// Concurrent appends are committed together: whoever finds no append
// under way starts one that takes every record queued — one batch per
// partition — and keeps taking what queued meanwhile until the queue is
// empty; the others wait for their outcome. As with franz-go's one
// request in flight and no linger, a record waits for at most the
// append before it.
type embeddedProducer struct {
	c    *kfake.Cluster
	wait time.Duration // how long Close waits for the round under way

	mu     sync.Mutex
	bytes  int // recordBound of every record queued or in the round under way
	limit  int // maxBufferedBytes; tests lower it
	queue  []queuedRecord
	spare  []queuedRecord // the queue's other buffer, swapped in per round
	busy   bool           // an appending goroutine runs
	idle   chan struct{}  // closed when the appending goroutine ends
	closed bool

	builder batchBuilder // the appending goroutine's (busy): one at a time
}

type queuedRecord struct {
	r       *kgo.Record
	promise func(*kgo.Record, error)
	size    int // recordBound(r)
}

func newEmbeddedProducer(e *Embedded, closeWait time.Duration) *embeddedProducer {
	return &embeddedProducer{c: e.cluster, wait: closeWait, limit: maxBufferedBytes}
}

// TryProduce queues r for the next append and calls promise with its
// outcome: r with its Offset, or an error. The context is not used: a
// caller that gives up waits no longer for promise, and the record is
// appended anyway, as franz-go's producer appends it once it is sent.
func (p *embeddedProducer) TryProduce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		promise(r, errProducerClosed)
		return
	}
	size := recordBound(r)
	if p.bytes+size > p.limit {
		p.mu.Unlock()
		promise(r, kgo.ErrMaxBuffered)
		return
	}
	p.bytes += size
	if r.Timestamp.IsZero() {
		r.Timestamp = time.Now()
	}
	p.queue = append(p.queue, queuedRecord{r, promise, size})
	if p.busy {
		p.mu.Unlock()
		return
	}
	// Not on the caller's goroutine: a caller must be free to give up
	// while its append waits for the broker (an fsync, say).
	p.busy, p.idle = true, make(chan struct{})
	p.mu.Unlock()
	go p.run()
}

// run appends what is queued, round after round, until the queue is empty.
func (p *embeddedProducer) run() {
	for {
		// No runtime.Gosched first to let more callers queue: it puts
		// this goroutine on the scheduler's global queue, which a busy P
		// looks at once in 61 turns, so on a loaded node a round could
		// wait there behind whatever was runnable — at 5,000 sends/s
		// on a busy machine the ack p99 was 57–60 ms with it and 24–34
		// ms without (docs/benchmarks.md). The records that arrive while
		// a round is appended make the next one; rounds are smaller when
		// nothing else runs (BenchmarkAppend, 128 senders: 1.2 against
		// 1.5 µs an append, far below what a node spends on a message).
		p.mu.Lock()
		round := p.queue
		if len(round) == 0 {
			p.busy = false
			close(p.idle)
			p.mu.Unlock()
			return
		}
		p.queue, p.spare = p.spare[:0], nil
		p.mu.Unlock()

		p.builder.append(p.c, round)

		done := 0
		for _, q := range round {
			done += q.size
		}
		clear(round) // the records are their callers'
		p.mu.Lock()
		p.bytes -= done
		p.spare = round[:0]
		p.mu.Unlock()
	}
}

// Flush waits until every record queued is appended, or ctx ends.
func (p *embeddedProducer) Flush(ctx context.Context) error {
	p.mu.Lock()
	busy, idle := p.busy, p.idle
	p.mu.Unlock()
	if !busy {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close fails every later append, and waits up to wait for the round
// under way, if any (one may start between a Flush and Close).
func (p *embeddedProducer) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), p.wait)
	defer cancel()
	_ = p.Flush(ctx)
}

// batchBuilder encodes a round of records into record batches, appends
// them and tells each record's caller. It is for one goroutine, and keeps
// its buffers from round to round.
type batchBuilder struct {
	buf     []byte
	batches []kfake.PartitionBatch
	sent    []int // the runs of batches
	runs    []recordRun
	open    map[topicPartition]int // the run of a partition still taking records
}

type topicPartition struct {
	topic     string
	partition int32
}

// recordRun is the records of one batch: a partition's, in queue order.
type recordRun struct {
	topic    string
	recs     []queuedRecord
	bytes    int // a bound on the batch's size encoded
	from, to int // where in buf the batch is
	base     int64
	err      error
	sent     bool // handed to the broker
}

// recordBound bounds the bytes r adds to a batch: its size with the
// largest deltas and length prefix.
func recordBound(r *kgo.Record) int {
	return recordSize(r, 0, 0) + 4 + 9 + 5
}

// append appends round to c, one batch per partition (more if one would
// exceed maxBatchBytes), and calls every record's promise.
func (b *batchBuilder) append(c *kfake.Cluster, round []queuedRecord) {
	if b.open == nil {
		b.open = map[topicPartition]int{}
	}
	clear(b.open)
	b.runs = b.runs[:0]
	for _, q := range round {
		tp := topicPartition{q.r.Topic, q.r.Partition}
		size := recordBound(q.r)
		i, ok := b.open[tp]
		if !ok || b.runs[i].bytes+size > maxBatchBytes {
			i = len(b.runs)
			var recs []queuedRecord
			if i < cap(b.runs) {
				recs = b.runs[:i+1][i].recs[:0]
			}
			b.runs = append(b.runs, recordRun{topic: tp.topic, recs: recs, bytes: batchHeaderLen})
			b.open[tp] = i
		}
		b.runs[i].recs = append(b.runs[i].recs, q)
		b.runs[i].bytes += size
	}

	if cap(b.buf) > 4*maxBatchBytes {
		b.buf = nil // a burst's: let it go
	}
	b.buf = b.buf[:0]
	for i := range b.runs {
		run := &b.runs[i]
		run.from = len(b.buf)
		b.buf = appendBatch(b.buf, run.recs)
		run.to = len(b.buf)
	}

	// One call per topic; a round mostly holds one.
	for i := range b.runs {
		if b.runs[i].sent {
			continue
		}
		topic := b.runs[i].topic
		b.batches, b.sent = b.batches[:0], b.sent[:0]
		for j := i; j < len(b.runs); j++ {
			if run := &b.runs[j]; run.topic == topic {
				run.sent = true
				b.batches = append(b.batches, kfake.PartitionBatch{Partition: run.recs[0].r.Partition, Batch: b.buf[run.from:run.to]})
				b.sent = append(b.sent, j)
			}
		}
		res, err := c.AppendPartitions(topic, b.batches)
		if errors.Is(err, kfake.ErrClosed) {
			err = errors.New("the embedded broker stopped")
		}
		for k, j := range b.sent {
			run := &b.runs[j]
			switch {
			case err != nil:
				run.err = err
			case res[k].Err != nil:
				run.err = res[k].Err
			default:
				run.base = res[k].BaseOffset
			}
		}
	}

	for i := range b.runs {
		run := &b.runs[i]
		for k, q := range run.recs {
			if run.err != nil {
				q.promise(q.r, run.err)
				continue
			}
			q.r.Offset = run.base + int64(k)
			q.promise(q.r, nil)
		}
		clear(run.recs)
	}
}

// recordSize is the length field of r encoded at offsetDelta, tsDelta in
// its batch, as franz-go counts it.
func recordSize(r *kgo.Record, offsetDelta int32, tsDelta int64) int {
	n := 1 + // attributes
		kbin.VarlongLen(tsDelta) +
		kbin.VarintLen(offsetDelta) +
		kbin.VarintLen(int32(len(r.Key))) + len(r.Key) +
		kbin.VarintLen(int32(len(r.Value))) + len(r.Value) +
		kbin.VarintLen(int32(len(r.Headers)))
	for _, h := range r.Headers {
		n += kbin.VarintLen(int32(len(h.Key))) + len(h.Key) +
			kbin.VarintLen(int32(len(h.Value))) + len(h.Value)
	}
	return n
}

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// appendBatch appends recs as one uncompressed record batch (magic 2),
// encoded as franz-go's producer encodes one but with no producer id:
// base offset 0 (the broker assigns offsets), create time, each record's
// timestamp as a delta from the first's.
func appendBatch(dst []byte, recs []queuedRecord) []byte {
	start := len(dst)
	first := recs[0].r.Timestamp.UnixMilli()
	var maxDelta int64
	dst = kbin.AppendInt64(dst, 0)  // base offset
	dst = kbin.AppendInt32(dst, 0)  // length, set below
	dst = kbin.AppendInt32(dst, -1) // partition leader epoch: the broker's
	dst = kbin.AppendInt8(dst, 2)   // magic
	crcAt := len(dst)
	dst = kbin.AppendInt32(dst, 0) // crc, set below
	dst = kbin.AppendInt16(dst, 0) // attributes: no compression, create time
	dst = kbin.AppendInt32(dst, int32(len(recs)-1))
	dst = kbin.AppendInt64(dst, first)
	maxTSAt := len(dst)
	dst = kbin.AppendInt64(dst, first) // max timestamp, set below
	dst = kbin.AppendInt64(dst, -1)    // producer id: none
	dst = kbin.AppendInt16(dst, -1)    // producer epoch
	dst = kbin.AppendInt32(dst, -1)    // first sequence
	dst = kbin.AppendArrayLen(dst, len(recs))
	for i, q := range recs {
		r := q.r
		var tsDelta int64
		if i > 0 {
			tsDelta = r.Timestamp.UnixMilli() - first
		}
		maxDelta = max(maxDelta, tsDelta)
		dst = kbin.AppendVarint(dst, int32(recordSize(r, int32(i), tsDelta)))
		dst = kbin.AppendInt8(dst, 0) // attributes
		dst = kbin.AppendVarlong(dst, tsDelta)
		dst = kbin.AppendVarint(dst, int32(i))
		dst = kbin.AppendVarintBytes(dst, r.Key)
		dst = kbin.AppendVarintBytes(dst, r.Value)
		dst = kbin.AppendVarint(dst, int32(len(r.Headers)))
		for _, h := range r.Headers {
			dst = kbin.AppendVarintString(dst, h.Key)
			dst = kbin.AppendVarintBytes(dst, h.Value)
		}
	}
	kbin.AppendInt64(dst[:maxTSAt], first+maxDelta)
	kbin.AppendInt32(dst[:start+batchLengthAt], int32(len(dst)-start-12))
	kbin.AppendInt32(dst[:crcAt], int32(crc32.Checksum(dst[crcAt+4:], crc32c)))
	return dst
}
