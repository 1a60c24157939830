package kfake

import (
	"errors"
	"io"
	"slices"
)

// [parley] In-process reads. The process that runs the cluster reads a
// partition's record batches directly, without the Kafka protocol: no
// loopback connection, no fetch request to encode and decode, no fetch
// session, no consumer polling. A read runs in the cluster's goroutine
// like every request, so it sees the partition as a fetch would.

var (
	// ErrClosed is returned by a read of a closed cluster.
	ErrClosed = errors.New("kfake: the cluster is closed")
	// ErrUnknownPartition is returned by a read of a topic or partition
	// that does not exist.
	ErrUnknownPartition = errors.New("kfake: unknown topic or partition")
	// ErrOffsetOutOfRange is returned by a read of an offset before the
	// partition's log start or after its high watermark.
	ErrOffsetOutOfRange = errors.New("kfake: offset out of range")
)

// PartitionRead is what ReadPartition read.
type PartitionRead struct {
	// Batches are whole record batches in their wire form, in log
	// order, as a fetch returns them: the first holds the offset read,
	// and may start before it. Empty when the read was at the end.
	Batches []byte
	// HighWatermark is the offset the partition's next record gets.
	HighWatermark int64
	// LogStartOffset is the partition's first offset still held.
	LogStartOffset int64
	// Appended, set when the read reached the high watermark (Batches
	// empty, or ending there), is closed once a record is appended to
	// the partition after this read, or its topic is deleted: a reader
	// at the end waits on it rather than reading again. Done tells of
	// the cluster closing.
	Appended <-chan struct{}
}

// ReadPartition reads topic's partition from offset: the batches from the
// one holding offset on, appended to dst, up to maxBytes of them (at least
// one batch however large). It reads up to the high watermark, as a
// read_uncommitted fetch does.
func (c *Cluster) ReadPartition(topic string, partition int32, offset int64, maxBytes int, dst []byte) (PartitionRead, error) {
	r := PartitionRead{Batches: dst}
	var err error
	ran := c.tryAdmin(func() {
		pd, ok := c.data.tps.getp(topic, partition)
		if !ok {
			err = ErrUnknownPartition
			return
		}
		r.HighWatermark, r.LogStartOffset = pd.highWatermark, pd.logStartOffset
		segIdx, metaIdx, found, atEnd := pd.searchOffset(offset)
		if !found && !atEnd {
			err = ErrOffsetOutOfRange
			return
		}
		if !atEnd {
			var end int64
			if r.Batches, end, err = c.readBatchesInto(pd, segIdx, metaIdx, maxBytes, r.Batches); err != nil || end < pd.highWatermark {
				return
			}
		}
		if pd.appended == nil {
			pd.appended = make(chan struct{})
		}
		r.Appended = pd.appended
	})
	if !ran {
		return PartitionRead{}, ErrClosed
	}
	return r, err
}

// Done is closed when the cluster closes.
func (c *Cluster) Done() <-chan struct{} { return c.die }

// readBatchesInto appends the batches from segment segIdx's batch metaIdx
// on to dst, up to maxBytes (at least one), reading each segment's run of
// adjacent batches with one read; end is the offset after the last batch.
func (c *Cluster) readBatchesInto(pd *partData, segIdx, metaIdx, maxBytes int, dst []byte) (_ []byte, end int64, _ error) {
	var total int
	for si := segIdx; si < len(pd.segments); si++ {
		seg := &pd.segments[si]
		start := 0
		if si == segIdx {
			start = metaIdx
		}
		// The run [from, from+n) of adjacent batches in this segment.
		var from, n int64 = -1, 0
		flush := func() error {
			if n == 0 {
				return nil
			}
			if b, ok := pd.tail.read(seg.base, si == len(pd.segments)-1, from, n); ok {
				dst = append(dst, b...)
				from, n = -1, 0
				return nil
			}
			f, err := c.segReadFile(pd, si)
			if err != nil {
				return err
			}
			if _, err := f.Seek(from, io.SeekStart); err != nil {
				return err
			}
			at := len(dst)
			dst = slices.Grow(dst, int(n))[:at+int(n)]
			if _, err := io.ReadFull(f, dst[at:]); err != nil {
				return err
			}
			from, n = -1, 0
			return nil
		}
		for i := start; i < seg.index.len(); i++ {
			m := seg.index.at(i)
			if total > 0 && total+int(m.nbytes) > maxBytes {
				return dst, end, flush()
			}
			if m.segPos < 0 {
				return dst, end, errors.New("kfake: a batch was not persisted")
			}
			if from >= 0 && m.segPos != from+n {
				if err := flush(); err != nil {
					return dst, end, err
				}
			}
			if from < 0 {
				from = m.segPos
			}
			n += int64(m.nbytes)
			total += int(m.nbytes)
			end = m.firstOffset + int64(m.lastOffsetDelta) + 1
		}
		if err := flush(); err != nil {
			return dst, end, err
		}
	}
	return dst, end, nil
}

// tryAdmin runs fn in the cluster's goroutine and waits for it, like
// admin, unless the cluster is closed: then it reports false.
func (c *Cluster) tryAdmin(fn func()) bool {
	done := make(chan struct{})
	select {
	case c.adminCh <- func() { fn(); close(done) }:
	case <-c.die:
		return false
	}
	<-done
	return true
}

// notifyAppended wakes the in-process readers waiting at the partition's
// end.
func (pd *partData) notifyAppended() {
	if pd.appended != nil {
		close(pd.appended)
		pd.appended = nil
	}
}

// tailBytes bounds a partition's segmentTail: about a second of a busy
// partition's appends, which a reader that keeps up reads from memory.
const tailBytes = 128 << 10

// segmentTail keeps the newest bytes appended to a partition's active
// segment, so that a read at the log's end — the single node's reader,
// woken by the append — copies them instead of seeking and reading the
// file in the cluster's goroutine. It holds one run of the file's bytes:
// [pos, pos+len(b)) of the segment whose base offset is base.
type segmentTail struct {
	base int64
	pos  int64
	b    []byte
}

// keep records that batch was written at pos of the segment based at
// base.
func (t *segmentTail) keep(base, pos int64, batch []byte) {
	if len(batch) > tailBytes/2 {
		t.reset()
		return
	}
	if t.base != base || t.pos+int64(len(t.b)) != pos || len(t.b) == 0 {
		t.base, t.pos, t.b = base, pos, t.b[:0]
	}
	if len(t.b)+len(batch) > tailBytes {
		// Drop the older half or more, a copy of at most half the tail.
		drop := max(len(t.b)/2, len(t.b)+len(batch)-tailBytes)
		n := copy(t.b, t.b[drop:])
		t.b, t.pos = t.b[:n], t.pos+int64(drop)
	}
	t.b = append(t.b, batch...)
}

// reset forgets what t holds.
func (t *segmentTail) reset() { t.b = t.b[:0] }

// read returns bytes [from, from+n) of the segment based at base, if t
// holds them all and that segment is still the active one.
func (t *segmentTail) read(base int64, active bool, from, n int64) ([]byte, bool) {
	if !active || len(t.b) == 0 || t.base != base || from < t.pos || from+n > t.pos+int64(len(t.b)) {
		return nil, false
	}
	return t.b[from-t.pos : from-t.pos+n], true
}
