package kfake

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// [parley] In-process appends. The process that runs the cluster appends
// record batches directly, without the Kafka protocol: no loopback
// connection, no produce request to encode and decode, no producer. An
// append runs in the cluster's goroutine like every request and does what
// a produce with acks=all does to each batch: the same checks
// (checkBatch), the same offsets, the same writes and, with SyncWrites,
// the same fsync before it answers; a failed write or fsync fails the
// batch and leaves the partition as it was.

// ErrNotAppendable is the error of an in-process batch that names a
// producer: in-process appends are neither idempotent nor transactional.
var ErrNotAppendable = errors.New("kfake: an in-process batch must not carry a producer id")

// PartitionBatch is a record batch for a partition.
type PartitionBatch struct {
	Partition int32
	// Batch is a record batch in its wire form (magic 2, base offset 0),
	// as a produce request carries it, with no producer id (-1). The
	// cluster copies it: the caller may reuse it once the append returns.
	Batch []byte
}

// AppendResult is where a batch of AppendPartitions landed, or why not.
type AppendResult struct {
	// BaseOffset is the offset of the batch's first record.
	BaseOffset int64
	// LogAppendTime is the time (ms) the cluster gave the batch's
	// records if the batch asks for log-append time, else -1.
	LogAppendTime int64
	// Err, if not nil, is why the batch was not appended: a kerr error
	// as a produce would answer (wrapped with the broker's message),
	// ErrUnknownPartition, or ErrNotAppendable.
	Err error
}

// AppendPartitions appends batches to topic's partitions in order (a
// partition may get several), each as a produce request with acks=all
// would, and returns each batch's outcome; it fails as a whole, with
// ErrClosed, only when the cluster is closed.
func (c *Cluster) AppendPartitions(topic string, batches []PartitionBatch) ([]AppendResult, error) {
	out := make([]AppendResult, len(batches))
	ran := c.tryAdmin(func() {
		now := time.Now().UnixMilli()
		maxMessageBytes := c.data.maxMessageBytes(topic)
		for i, pb := range batches {
			out[i] = c.appendBatch(topic, pb, maxMessageBytes, now)
		}
	})
	if !ran {
		return nil, ErrClosed
	}
	return out, nil
}

// appendBatch is handleProduce for one non-idempotent batch.
func (c *Cluster) appendBatch(topic string, pb PartitionBatch, maxMessageBytes int, now int64) AppendResult {
	pd, ok := c.data.tps.getp(topic, pb.Partition)
	if !ok {
		return AppendResult{Err: ErrUnknownPartition}
	}
	b, logAppendTime, code, msg := checkBatch(pb.Batch, maxMessageBytes, now)
	if code != 0 {
		return AppendResult{Err: fmt.Errorf("%w: %s", kerr.ErrorForCode(code), msg)}
	}
	if b.ProducerID >= 0 || b.Attributes&0x0010 != 0 {
		return AppendResult{Err: ErrNotAppendable}
	}
	base := c.pushBatch(pd, len(pb.Batch), b, false)
	if base < 0 {
		// What a produce answers; pushBatch logged the cause.
		return AppendResult{Err: fmt.Errorf("%w: the batch could not be written to the log", kerr.UnknownServerError)}
	}
	return AppendResult{BaseOffset: base, LogAppendTime: logAppendTime}
}
