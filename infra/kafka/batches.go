package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections/runner"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The record batch (magic 2) as the log stores it and a fetch returns it:
// a fixed 61-byte header, then the records.
const (
	batchHeaderLen  = 61
	batchLengthAt   = 8  // int32: the batch's length after this field
	batchMagicAt    = 16 // int8
	batchAttrsAt    = 21 // int16
	batchLastDeltaA = 23 // int32: the last record's offset delta
	batchFirstTSAt  = 27 // int64
	batchMaxTSAt    = 35 // int64
	batchCountAt    = 57 // int32: how many records

	attrCompression   = 0x07
	attrLogAppendTime = 0x08
	attrControl       = 0x20
)

var errCorruptBatch = errors.New("corrupt record batch")

// batchDecoder turns record batches in their wire form into runner
// records. Payloads are slices of the batches' bytes (or of their
// decompressed records), never copies: the caller keeps the bytes as long
// as it keeps the records. It is for one goroutine.
type batchDecoder struct {
	dec kgo.Decompressor
	// names interns event names: a log has few, and each record would
	// otherwise allocate its own.
	names map[string]string
}

func newBatchDecoder() *batchDecoder {
	return &batchDecoder{dec: kgo.DefaultDecompressor(), names: map[string]string{}}
}

// decode appends to out the records of batches at or after offset from,
// stopping before offset to if to >= 0. next is the offset after the last
// record or batch it walked, where the following read starts.
func (d *batchDecoder) decode(out []runner.RawRecord, batches []byte, from, to int64) (_ []runner.RawRecord, next int64, err error) {
	next = from
	prevEnd := int64(-1)
	for len(batches) > 0 {
		if len(batches) < batchHeaderLen {
			return out, next, fmt.Errorf("%w: %d bytes left of a header", errCorruptBatch, len(batches))
		}
		size := 12 + int64(int32(binary.BigEndian.Uint32(batches[batchLengthAt:])))
		if size < batchHeaderLen || size > int64(len(batches)) {
			return out, next, fmt.Errorf("%w: length %d of %d bytes", errCorruptBatch, size, len(batches))
		}
		b := batches[:size]
		batches = batches[size:]
		if magic := int8(b[batchMagicAt]); magic != 2 {
			return out, next, fmt.Errorf("%w: magic %d", errCorruptBatch, magic)
		}
		first := int64(binary.BigEndian.Uint64(b))
		end := first + int64(int32(binary.BigEndian.Uint32(b[batchLastDeltaA:]))) + 1
		if end <= first || first < prevEnd {
			return out, next, fmt.Errorf("%w: batch of offsets %d to %d after %d", errCorruptBatch, first, end, prevEnd)
		}
		prevEnd = end
		attrs := binary.BigEndian.Uint16(b[batchAttrsAt:])
		if end <= next || attrs&attrControl != 0 {
			next = max(next, end)
			continue
		}
		records := b[batchHeaderLen:]
		if codec := attrs & attrCompression; codec != 0 {
			if records, err = d.dec.Decompress(records, kgo.CompressionCodecType(codec)); err != nil {
				return out, next, fmt.Errorf("%w: %v", errCorruptBatch, err)
			}
		}
		firstTS := int64(binary.BigEndian.Uint64(b[batchFirstTSAt:]))
		maxTS := int64(binary.BigEndian.Uint64(b[batchMaxTSAt:]))
		count := int32(binary.BigEndian.Uint32(b[batchCountAt:]))
		last := first - 1
		for i := int32(0); i < count; i++ {
			var r runner.RawRecord
			var tsDelta, offDelta int64
			if records, tsDelta, offDelta, r, err = d.record(records); err != nil {
				return out, next, err
			}
			if r.Offset = first + offDelta; r.Offset <= last || r.Offset >= end {
				return out, next, fmt.Errorf("%w: record offset %d in a batch of %d to %d", errCorruptBatch, r.Offset, first, end)
			}
			last = r.Offset
			if r.Offset < next {
				continue
			}
			if to >= 0 && r.Offset >= to {
				return out, next, nil
			}
			if attrs&attrLogAppendTime != 0 {
				r.Timestamp = time.UnixMilli(maxTS)
			} else {
				r.Timestamp = time.UnixMilli(firstTS + tsDelta)
			}
			out = append(out, r)
			next = r.Offset + 1
		}
		next = max(next, end)
	}
	return out, next, nil
}

// record reads one record off the front of b: its timestamp and offset
// deltas, its value as Payload and its event header as Name.
func (d *batchDecoder) record(b []byte) (rest []byte, tsDelta, offDelta int64, r runner.RawRecord, err error) {
	length, n := binary.Varint(b)
	if n <= 0 || length < 0 || length > int64(len(b)-n) {
		return nil, 0, 0, r, fmt.Errorf("%w: record length", errCorruptBatch)
	}
	rec, rest := b[n:n+int(length)], b[n+int(length):]
	if len(rec) < 1 {
		return nil, 0, 0, r, fmt.Errorf("%w: empty record", errCorruptBatch)
	}
	rec = rec[1:] // attributes, unused
	var ok bool
	if tsDelta, rec, ok = varint(rec); !ok {
		return nil, 0, 0, r, fmt.Errorf("%w: timestamp delta", errCorruptBatch)
	}
	if offDelta, rec, ok = varint(rec); !ok {
		return nil, 0, 0, r, fmt.Errorf("%w: offset delta", errCorruptBatch)
	}
	if _, rec, ok = bytesField(rec); !ok { // the key
		return nil, 0, 0, r, fmt.Errorf("%w: key", errCorruptBatch)
	}
	if r.Payload, rec, ok = bytesField(rec); !ok {
		return nil, 0, 0, r, fmt.Errorf("%w: value", errCorruptBatch)
	}
	headers, rec, ok := varint(rec)
	if !ok || headers < 0 || headers > int64(len(rec)) {
		return nil, 0, 0, r, fmt.Errorf("%w: header count", errCorruptBatch)
	}
	for range headers {
		var k, v []byte
		if k, rec, ok = bytesField(rec); !ok {
			return nil, 0, 0, r, fmt.Errorf("%w: header key", errCorruptBatch)
		}
		if v, rec, ok = bytesField(rec); !ok {
			return nil, 0, 0, r, fmt.Errorf("%w: header value", errCorruptBatch)
		}
		if string(k) == events.MetadataName {
			r.Name = d.name(v)
		}
	}
	return rest, tsDelta, offDelta, r, nil
}

func (d *batchDecoder) name(v []byte) string {
	if s, ok := d.names[string(v)]; ok {
		return s
	}
	s := string(v)
	if len(d.names) < 256 {
		d.names[s] = s
	}
	return s
}

func varint(b []byte) (int64, []byte, bool) {
	v, n := binary.Varint(b)
	if n <= 0 {
		return 0, nil, false
	}
	return v, b[n:], true
}

// bytesField reads a varint length and that many bytes; a length of -1
// is null (nil).
func bytesField(b []byte) ([]byte, []byte, bool) {
	n, b, ok := varint(b)
	if !ok || n < -1 || n > int64(len(b)) {
		return nil, nil, false
	}
	if n == -1 {
		return nil, b, true
	}
	return b[:n:n], b[n:], true
}
