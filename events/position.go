package events

import (
	"fmt"
	"hash/fnv"

	"github.com/parley-chat/parley/domain"
)

// A msgid is a record's offset in its partition with the log epoch in the
// high bits: epoch<<OffsetBits | offset. The broker is the sequencer, so
// msgid order is log order by construction (I2), and moving the log to a new
// cluster with a higher epoch keeps msgids increasing. With 5 epoch bits and
// 48 offset bits every msgid stays below 2^53 and is exact in JavaScript.
const (
	OffsetBits = 48
	// MaxEpoch is the largest log epoch.
	MaxEpoch = 31
	// MaxOffset is the largest partition offset a msgid can carry.
	MaxOffset = 1<<OffsetBits - 1
)

// Position is where a record sits in the log.
type Position struct {
	Partition int32
	Offset    int64
}

// MsgID maps a record's offset to a msgid under the given epoch.
func MsgID(epoch uint8, offset int64) (domain.MsgID, error) {
	if epoch > MaxEpoch {
		return 0, fmt.Errorf("cannot make a msgid: epoch %d is over %d", epoch, MaxEpoch)
	}
	if offset < 0 || offset > MaxOffset {
		return 0, fmt.Errorf("cannot make a msgid: offset %d is out of range", offset)
	}
	return domain.MsgID(int64(epoch)<<OffsetBits | offset), nil
}

// OffsetOf is the partition offset inside a msgid.
func OffsetOf(id domain.MsgID) int64 { return int64(id) & MaxOffset }

// EpochOf is the log epoch inside a msgid.
func EpochOf(id domain.MsgID) uint8 { return uint8(int64(id) >> OffsetBits) }

// PartitionFor is the partition of a conversation key among n partitions.
// Parley's publisher places records with it explicitly, and readers use it to
// know which partition's progress a conversation depends on. The partition
// count is fixed when the topic is created: changing it moves conversations.
func PartitionFor(key string, n int32) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int32(h.Sum32()&0x7fffffff) % n
}
