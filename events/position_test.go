package events_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
)

func TestMsgIDRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		epoch  uint8
		offset int64
		want   domain.MsgID
	}{
		{"zero", 0, 0, 0},
		{"epoch 0 offset 1", 0, 1, 1},
		{"epoch 1 offset 0", 1, 0, 1 << 48},
		{"epoch 1 offset 5", 1, 5, 1<<48 | 5},
		{"max offset", 1, events.MaxOffset, 1<<48 | (1<<48 - 1)},
		{"max epoch and offset", events.MaxEpoch, events.MaxOffset, 1<<53 - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := events.MsgID(tt.epoch, tt.offset)
			if err != nil {
				t.Fatalf("MsgID(%d, %d): %v", tt.epoch, tt.offset, err)
			}
			if id != tt.want {
				t.Errorf("MsgID(%d, %d) = %d, want %d", tt.epoch, tt.offset, id, tt.want)
			}
			if got := events.OffsetOf(id); got != tt.offset {
				t.Errorf("OffsetOf = %d, want %d", got, tt.offset)
			}
			if got := events.EpochOf(id); got != tt.epoch {
				t.Errorf("EpochOf = %d, want %d", got, tt.epoch)
			}
			// Every msgid is exact as a JavaScript number (a float64).
			if int64(float64(id)) != int64(id) || id >= 1<<53 {
				t.Errorf("msgid %d is not exact in a float64", id)
			}
		})
	}
}

func TestMsgIDRangeErrors(t *testing.T) {
	tests := []struct {
		name   string
		epoch  uint8
		offset int64
	}{
		{"epoch over max", events.MaxEpoch + 1, 0},
		{"epoch 255", math.MaxUint8, 1},
		{"negative offset", 1, -1},
		{"offset over max", 1, events.MaxOffset + 1},
		{"offset max int64", 1, math.MaxInt64},
		{"min int64 offset", 0, math.MinInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := events.MsgID(tt.epoch, tt.offset)
			if err == nil {
				t.Fatalf("MsgID(%d, %d) = %d, want an error", tt.epoch, tt.offset, id)
			}
			if id != 0 {
				t.Errorf("MsgID returned %d with an error", id)
			}
		})
	}
}

// A higher epoch keeps msgids increasing across a move of the log, whatever
// the offsets in the new cluster.
func TestMsgIDOrdersByEpochThenOffset(t *testing.T) {
	old, err := events.MsgID(1, events.MaxOffset)
	if err != nil {
		t.Fatal(err)
	}
	moved, err := events.MsgID(2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if moved <= old {
		t.Errorf("epoch 2 offset 0 (%d) is not above epoch 1 max offset (%d)", moved, old)
	}
	a, _ := events.MsgID(3, 10)
	b, _ := events.MsgID(3, 11)
	if b <= a {
		t.Errorf("offset order not kept: %d <= %d", b, a)
	}
}

func TestPartitionFor(t *testing.T) {
	keys := []string{"", "d:alice:bob", "g:team", "g:another-team", "d:a:a", "\xff\xfe"}
	for i := 0; i < 200; i++ {
		keys = append(keys, fmt.Sprintf("d:user%d:user%d", i, i+1))
	}
	for _, n := range []int32{1, 2, 3, 16, 100, math.MaxInt32} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			used := map[int32]bool{}
			for _, k := range keys {
				p := events.PartitionFor(k, n)
				if p < 0 || p >= n {
					t.Fatalf("PartitionFor(%q, %d) = %d, out of range", k, n, p)
				}
				if again := events.PartitionFor(k, n); again != p {
					t.Fatalf("PartitionFor(%q, %d) unstable: %d then %d", k, n, p, again)
				}
				used[p] = true
			}
			// 206 keys over a few partitions must not all land in one.
			if n > 1 && n <= 16 && len(used) < 2 {
				t.Errorf("all keys in one of %d partitions", n)
			}
			if n == 1 && !used[0] {
				t.Errorf("n=1 did not use partition 0")
			}
		})
	}
}

// The partition of a key is part of the on-disk layout: records already in
// the log were placed with it, so the hash must never change.
func TestPartitionForIsPinned(t *testing.T) {
	tests := []struct {
		key  string
		n    int32
		want int32
	}{
		// FNV-1a 32 of "" is 0x811c9dc5; &0x7fffffff = 0x011c9dc5 = 18652613.
		{"", 16, 18652613 % 16},
		{"", 1000, 18652613 % 1000},
	}
	for _, tt := range tests {
		if got := events.PartitionFor(tt.key, tt.n); got != tt.want {
			t.Errorf("PartitionFor(%q, %d) = %d, want %d", tt.key, tt.n, got, tt.want)
		}
	}
	// The same conversation, built either way round, has one partition.
	x := events.PartitionFor(domain.DirectConversation("alice", "bob").String(), events.DefaultPartitions)
	y := events.PartitionFor(domain.DirectConversation("bob", "alice").String(), events.DefaultPartitions)
	if x != y {
		t.Errorf("direct conversation partitions differ by direction: %d vs %d", x, y)
	}
}
