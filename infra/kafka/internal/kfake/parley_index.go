package kfake

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"unsafe"
)

// [parley] A segment's batch index, in chunks that may leave memory.
//
// Upstream kept a batchMeta (72 bytes) per record batch in the heap for
// as long as the batch stayed in the log: about 50 MB per million small
// batches, never given back, which a long-running single node paid for in
// garbage collection. Here a segment's index is cut into chunks of
// indexChunkLen entries. A chunk always keeps a summary — where its
// batches start in the segment file, how many bytes they span, a copy of
// its last entry, its timestamp bounds — and keeps its entries only while
// the cluster's indexCache has room for them. The least recently used
// chunk leaves memory first; it is read back from the segment's batch
// headers and .idx entries when it is next needed. Searches go through the
// summaries first, so a lookup reads at most one chunk. The chunk that the
// active segment's next batches go to stays in memory, outside the cache:
// one per partition.
//
// Everything here runs in the cluster's goroutine, like all of its I/O.
// A *batchMeta from at stays readable after its chunk leaves memory, but
// only the index may change entries.

// indexChunkLen is the number of entries in a chunk: 36 KiB of entries in
// memory, one summary per 512 batches when out of it.
const indexChunkLen = 512

// DefaultIndexCacheBytes is how many bytes of index entries a cluster
// keeps in memory unless IndexCacheBytes says otherwise: about 116,000
// batches, the newest of every partition and what its readers read.
const DefaultIndexCacheBytes = 8 << 20

// MinIndexCacheBytes is the least IndexCacheBytes takes: room for one
// chunk of entries.
const MinIndexCacheBytes = chunkBytes

// batchHeaderLen is the fixed part of a RecordBatch (v2) before its
// records: every field batchMeta takes from the segment file.
const batchHeaderLen = 61

// metaBytes is what one entry costs in memory, chunkBytes a full chunk.
const (
	metaBytes  = int(unsafe.Sizeof(batchMeta{}))
	chunkBytes = indexChunkLen * metaBytes
)

type (
	// batchIndex is the index of one segment's batches, in file order.
	// Entry i (counted from the first live one) is the segment file's
	// batch head+i; the batches before head were trimmed by the log
	// start moving into the segment.
	batchIndex struct {
		src       *indexSource
		chunks    []*indexChunk // each but the last holds indexChunkLen entries
		head      int           // file entry of the first live entry
		headBytes int64         // bytes of the entries of chunks[0] before head
		n         int           // live entries
	}

	// indexSource is where a chunk's entries are read back from.
	indexSource struct {
		cache *indexCache
		dir   string
		base  int64
	}

	// indexChunk is indexChunkLen consecutive entries of a segment's
	// index (the last chunk may hold fewer) and their summary.
	indexChunk struct {
		metas []batchMeta // nil while out of memory
		first int         // file entry of metas[0]
		count int         // entries, trimmed ones included
		pos   int64       // segment file position of the first entry
		bytes int64       // segment file bytes of all its entries
		last  batchMeta   // a copy of the last entry

		// earlier is the greatest maxTimestamp of the live batches
		// before this chunk, math.MinInt64 if there are none: a chunk
		// read back recomputes its entries' maxEarlierTimestamp from it.
		earlier int64
		// maxTs is the greatest maxTimestamp of the live entries, minTs
		// the least of all entries: retention decides most chunks from
		// them without reading the entries.
		maxTs, minTs int64

		prev, next *indexChunk // the cache's recency list
		cached     bool
		cost       int // bytes counted in the cache's used
	}

	// indexCache bounds the bytes of index entries in memory, across
	// every partition of the cluster.
	indexCache struct {
		fs     fs
		logger Logger
		budget int
		used   int
		// head is the most recently used chunk, tail the least.
		head, tail *indexChunk
		readBack   int64 // chunks read back from their segment
		hdr        [batchHeaderLen]byte
		idx        []byte
		rd         *bufio.Reader
	}
)

// IndexStats is what the batch index costs.
type IndexStats struct {
	// InMemory is the bytes of entries in the cache, which
	// IndexCacheBytes bounds.
	InMemory int
	// Filling is the bytes of entries in the chunks that segments are
	// filling, outside the cache: at most one chunk a partition.
	Filling int
	// ReadBack counts the chunks of entries read back from segments.
	ReadBack int64
}

// IndexStats reports the cluster's batch index, or zeros if the cluster
// is closed.
func (c *Cluster) IndexStats() IndexStats {
	var s IndexStats
	c.tryAdmin(func() {
		s = IndexStats{InMemory: c.indexes.used, ReadBack: c.indexes.readBack}
		c.data.tps.each(func(_ string, _ int32, pd *partData) {
			if n := len(pd.segments); n > 0 {
				ix := &pd.segments[n-1].index
				if k := len(ix.chunks) - 1; k >= 0 && !ix.chunks[k].cached {
					s.Filling += cap(ix.chunks[k].metas) * metaBytes
				}
			}
		})
	})
	return s
}

func newIndexCache(fsys fs, logger Logger, budget int) *indexCache {
	if budget <= 0 {
		budget = DefaultIndexCacheBytes
	}
	return &indexCache{fs: fsys, logger: logger, budget: max(budget, MinIndexCacheBytes)}
}

// loadIndexCacheBytes bounds the index entries in memory of each
// partition while partitions load concurrently.
const loadIndexCacheBytes = 16 * chunkBytes

// newSegmentInfo is an empty segment based at base, whose index reads
// its chunks back from the partition's files.
func (c *Cluster) newSegmentInfo(pd *partData, base int64) segmentInfo {
	cache := c.indexes
	if pd.loadIndexes != nil {
		cache = pd.loadIndexes
	}
	return segmentInfo{base: base, index: batchIndex{src: &indexSource{
		cache: cache,
		dir:   partDir(c.storageDir, pd.t, pd.p),
		base:  base,
	}}}
}

// adoptIndexes moves the index of pd, loaded with a cache of its own,
// into the cluster's cache, oldest chunks first.
func (c *Cluster) adoptIndexes(pd *partData) {
	own := pd.loadIndexes
	if own == nil {
		return
	}
	pd.loadIndexes = nil
	c.indexes.readBack += own.readBack
	for si := range pd.segments {
		ix := &pd.segments[si].index
		if ix.src == nil || ix.src.cache != own {
			continue
		}
		ix.src.cache = c.indexes
		for _, ch := range ix.chunks {
			if ch.cached {
				own.remove(ch)
				c.indexes.add(ch)
			}
		}
		if si < len(pd.segments)-1 {
			ix.seal()
		}
	}
}

// len is the number of live entries.
func (ix *batchIndex) len() int { return ix.n }

// fileEntries is the number of entries in the segment's .idx file.
func (ix *batchIndex) fileEntries() int { return ix.head + ix.n }

// at returns live entry i, reading its chunk back if needed.
func (ix *batchIndex) at(i int) *batchMeta {
	f := ix.head + i - ix.chunks[0].first
	return &ix.load(f / indexChunkLen)[f%indexChunkLen]
}

// lastMeta is a copy of the last live entry, for reading only; nil if
// there is none.
func (ix *batchIndex) lastMeta() *batchMeta {
	if ix.n == 0 {
		return nil
	}
	return &ix.chunks[len(ix.chunks)-1].last
}

// headBytesOf is the bytes of chunk k's entries before the first live one.
func (ix *batchIndex) headBytesOf(k int) int64 {
	if k == 0 {
		return ix.headBytes
	}
	return 0
}

// liveStart is the position in chunk k of its first live entry.
func (ix *batchIndex) liveStart(k int) int {
	if k == 0 {
		return ix.head - ix.chunks[0].first
	}
	return 0
}

// append adds m as the last entry. earlier is the greatest maxTimestamp
// of the partition's batches before m, math.MinInt64 if it has none.
func (ix *batchIndex) append(m batchMeta, earlier int64) {
	var ch *indexChunk
	if k := len(ix.chunks) - 1; k >= 0 && ix.chunks[k].count < indexChunkLen {
		ch = ix.chunks[k]
		ix.load(k)
	} else {
		ch = &indexChunk{
			first:   ix.head + ix.n,
			pos:     m.segPos,
			earlier: earlier,
			maxTs:   math.MinInt64,
			minTs:   math.MaxInt64,
			metas:   make([]batchMeta, 0, 8), // grows to indexChunkLen as batches come
		}
		ix.chunks = append(ix.chunks, ch)
	}
	ch.metas = append(ch.metas, m)
	ch.count++
	ch.bytes += int64(m.nbytes)
	ch.last = m
	ch.maxTs = max(ch.maxTs, m.maxTimestamp)
	ch.minTs = min(ch.minTs, m.maxTimestamp)
	ix.n++
	if ch.count == indexChunkLen && ix.src != nil {
		ix.src.cache.add(ch) // full: it may leave memory now
	}
}

// seal lets the last chunk leave memory once no batch will be appended to
// the segment.
func (ix *batchIndex) seal() {
	if k := len(ix.chunks) - 1; k >= 0 && ix.src != nil {
		if ch := ix.chunks[k]; !ch.cached && ch.metas != nil {
			ix.src.cache.add(ch)
		}
	}
}

// trimBelow removes the live entries of the batches that end at or
// before start, as the log start passes them, and returns their bytes.
// Whole chunks go by their summary; only the chunk that start falls in
// is read. That chunk then keeps a maxTs that may count removed entries
// until refreshHead.
func (ix *batchIndex) trimBelow(start int64) (freed int64) {
	for len(ix.chunks) > 0 {
		ch := ix.chunks[0]
		if batchEnd(&ch.last) <= start {
			freed += ch.bytes - ix.headBytes
			ix.n -= ch.first + ch.count - ix.head
			ix.head, ix.headBytes = ch.first+ch.count, 0
			if ix.src != nil {
				ix.src.cache.remove(ch)
			}
			ix.chunks[0] = nil
			ix.chunks = ix.chunks[1:]
			continue
		}
		metas := ix.load(0)
		for j := ix.liveStart(0); j < ch.count && batchEnd(&metas[j]) <= start; j++ {
			freed += int64(metas[j].nbytes)
			ix.headBytes += int64(metas[j].nbytes)
			ix.head++
			ix.n--
		}
		break
	}
	return freed
}

// refreshHead recomputes the first chunk's maxTs over its live entries,
// after dropFirst.
func (ix *batchIndex) refreshHead() {
	if len(ix.chunks) == 0 || ix.liveStart(0) == 0 {
		return
	}
	ch := ix.chunks[0]
	metas := ix.load(0)
	ch.maxTs = math.MinInt64
	for i := ix.liveStart(0); i < ch.count; i++ {
		ch.maxTs = max(ch.maxTs, metas[i].maxTimestamp)
	}
}

// release gives the chunks' memory back, when the segment is deleted.
func (ix *batchIndex) release() {
	if ix.src == nil {
		return
	}
	for _, ch := range ix.chunks {
		ix.src.cache.remove(ch)
	}
}

// search returns the first live entry i for which pred is true, or len()
// if there is none. pred must be false for a prefix of the entries and
// true for the rest.
func (ix *batchIndex) search(pred func(*batchMeta) bool) int {
	k := sort.Search(len(ix.chunks), func(k int) bool { return pred(&ix.chunks[k].last) })
	if k == len(ix.chunks) {
		return ix.n
	}
	ch, metas, from := ix.chunks[k], ix.load(k), ix.liveStart(k)
	j := from + sort.Search(ch.count-from, func(j int) bool { return pred(&metas[from+j]) })
	return ch.first + j - ix.head
}

// each calls fn with every live entry in order until fn returns false;
// it reports whether fn always returned true.
func (ix *batchIndex) each(fn func(i int, m *batchMeta) bool) bool {
	i := 0
	for k := range ix.chunks {
		metas := ix.load(k)
		for j := ix.liveStart(k); j < len(metas); j++ {
			if !fn(i, &metas[j]) {
				return false
			}
			i++
		}
	}
	return true
}

// rebuildEarlier sets every chunk's earlier, and the entries' and last
// copies' maxEarlierTimestamp of the chunks in memory, from seen, the
// greatest maxTimestamp before the segment (math.MinInt64 if none). It
// returns the greatest after it.
func (ix *batchIndex) rebuildEarlier(seen int64) int64 {
	ix.refreshHead()
	for k, ch := range ix.chunks {
		ch.earlier = seen
		if ch.metas != nil {
			ix.fillEarlier(k)
		}
		seen = max(seen, ch.maxTs)
		ch.last.maxEarlierTimestamp = seen
	}
	return seen
}

// fillEarlier computes the maxEarlierTimestamp of chunk k's live entries
// from the chunk's earlier.
func (ix *batchIndex) fillEarlier(k int) {
	ch := ix.chunks[k]
	running := ch.earlier
	for j := ix.liveStart(k); j < len(ch.metas); j++ {
		running = max(running, ch.metas[j].maxTimestamp)
		ch.metas[j].maxEarlierTimestamp = running
	}
}

// load returns chunk k's entries, reading them back if they left memory
// (only a chunk in the cache leaves it).
// A chunk that cannot be read back yields entries that no read can use:
// copies of its last entry at position -1, which readBatchRaw and
// readBatchesInto refuse; a search for an offset in it ends at its first
// entry, and trimBelow keeps them until the whole chunk goes.
func (ix *batchIndex) load(k int) []batchMeta {
	ch := ix.chunks[k]
	if ch.metas != nil {
		if ch.cached {
			ix.src.cache.touch(ch)
		}
		return ch.metas
	}
	metas, err := ix.src.cache.read(ix.src, ch)
	if err != nil {
		ix.src.cache.logger.Logf(LogLevelError, "segment %s: reading back index entries %d..%d: %v",
			filepath.Join(ix.src.dir, segmentFileName(ix.src.base)), ch.first, ch.first+ch.count-1, err)
		unreadable := make([]batchMeta, ch.count)
		for i := range unreadable {
			unreadable[i] = ch.last
			unreadable[i].segPos = -1
		}
		return unreadable
	}
	ch.metas = metas
	ix.fillEarlier(k)
	ix.src.cache.readBack++
	ix.src.cache.add(ch)
	return metas
}

// add puts ch, whose entries are in memory, first in the recency list,
// and evicts the least recently used chunks beyond the budget.
func (c *indexCache) add(ch *indexChunk) {
	c.pushFront(ch)
	ch.cost = cap(ch.metas) * metaBytes
	c.used += ch.cost
	for c.used > c.budget && c.tail != ch {
		old := c.tail
		c.remove(old)
		old.metas = nil
	}
}

// touch marks ch as just used.
func (c *indexCache) touch(ch *indexChunk) {
	if c.head == ch {
		return
	}
	c.unlink(ch)
	c.pushFront(ch)
}

// remove takes ch out of the cache's accounting.
func (c *indexCache) remove(ch *indexChunk) {
	if !ch.cached {
		return
	}
	c.unlink(ch)
	ch.cached = false
	c.used -= ch.cost
}

func (c *indexCache) pushFront(ch *indexChunk) {
	ch.prev, ch.next, ch.cached = nil, c.head, true
	if c.head != nil {
		c.head.prev = ch
	}
	c.head = ch
	if c.tail == nil {
		c.tail = ch
	}
}

func (c *indexCache) unlink(ch *indexChunk) {
	if ch.prev != nil {
		ch.prev.next = ch.next
	} else {
		c.head = ch.next
	}
	if ch.next != nil {
		ch.next.prev = ch.prev
	} else {
		c.tail = ch.prev
	}
	ch.prev, ch.next = nil, nil
}

// read reads chunk ch's entries back: the header of each of its batches
// from the segment file, and its epoch and transaction flag from the
// .idx file, as a load from disk does.
func (c *indexCache) read(src *indexSource, ch *indexChunk) ([]batchMeta, error) {
	seg, err := c.fs.OpenFile(filepath.Join(src.dir, segmentFileName(src.base)), os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer seg.Close()
	if _, err := seg.Seek(ch.pos, io.SeekStart); err != nil {
		return nil, err
	}
	idx, err := c.fs.OpenFile(filepath.Join(src.dir, indexFileName(src.base)), os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer idx.Close()
	if _, err := idx.Seek(int64(ch.first)*indexEntrySize, io.SeekStart); err != nil {
		return nil, err
	}
	if n := ch.count * indexEntrySize; cap(c.idx) < n {
		c.idx = make([]byte, n)
	} else {
		c.idx = c.idx[:n]
	}
	if _, err := io.ReadFull(idx, c.idx); err != nil {
		return nil, fmt.Errorf("index file: %w", err)
	}
	if c.rd == nil {
		c.rd = bufio.NewReaderSize(seg, 64<<10)
	} else {
		c.rd.Reset(seg)
	}
	defer c.rd.Reset(nil)

	metas := make([]batchMeta, ch.count)
	pos := ch.pos
	for j := range metas {
		if _, err := io.ReadFull(c.rd, c.hdr[:]); err != nil {
			return nil, fmt.Errorf("segment file at %d: %w", pos, err)
		}
		h := c.hdr[:]
		length := int32(binary.BigEndian.Uint32(h[8:12]))
		if length < batchHeaderLen-12 {
			return nil, fmt.Errorf("segment file at %d: batch length %d", pos, length)
		}
		m := batchMeta{
			firstOffset:     int64(binary.BigEndian.Uint64(h[0:8])),
			segPos:          pos,
			epoch:           int32(binary.BigEndian.Uint32(h[12:16])),
			lastOffsetDelta: int32(binary.BigEndian.Uint32(h[23:27])),
			firstTimestamp:  int64(binary.BigEndian.Uint64(h[27:35])),
			maxTimestamp:    int64(binary.BigEndian.Uint64(h[35:43])),
			producerID:      int64(binary.BigEndian.Uint64(h[43:51])),
			numRecords:      int32(binary.BigEndian.Uint32(h[57:61])),
			nbytes:          12 + length,
		}
		m.inTx = batchInTx(int16(binary.BigEndian.Uint16(h[21:23])))
		if epoch, _, inTx, ok := decodeIndexEntry(c.idx[j*indexEntrySize:]); ok {
			m.epoch, m.inTx = epoch, inTx
		}
		metas[j] = m
		pos += int64(m.nbytes)
		if j == len(metas)-1 {
			break
		}
		// To the next header: through the buffer, or past a large batch
		// with a seek.
		if skip := int(m.nbytes) - batchHeaderLen; skip <= c.rd.Buffered() || skip < 64<<10 {
			if _, err := c.rd.Discard(skip); err != nil {
				return nil, fmt.Errorf("segment file at %d: %w", pos, err)
			}
		} else {
			if _, err := seg.Seek(pos, io.SeekStart); err != nil {
				return nil, err
			}
			c.rd.Reset(seg)
		}
	}
	last := &metas[len(metas)-1]
	if pos != ch.pos+ch.bytes || last.firstOffset != ch.last.firstOffset || last.segPos != ch.last.segPos {
		return nil, errors.New("the files no longer hold the batches indexed")
	}
	return metas, nil
}

// batchEnd is the offset after m's last record.
func batchEnd(m *batchMeta) int64 { return m.firstOffset + int64(m.lastOffsetDelta) + 1 }

// expiredEnd is the end of the last batch whose maxTimestamp is at or
// before cutoff, or -1 if there is none. Chunks that lie wholly on one
// side of cutoff answer from their summary; as timestamps mostly grow,
// at most a chunk or two is read.
func (pd *partData) expiredEnd(cutoff int64) int64 {
	for si := len(pd.segments) - 1; si >= 0; si-- {
		ix := &pd.segments[si].index
		for k := len(ix.chunks) - 1; k >= 0; k-- {
			ch := ix.chunks[k]
			switch {
			case ch.minTs > cutoff:
				continue
			case ch.maxTs <= cutoff:
				return batchEnd(&ch.last)
			}
			metas := ix.load(k)
			for j := len(metas) - 1; j >= ix.liveStart(k); j-- {
				if metas[j].maxTimestamp <= cutoff {
					return batchEnd(&metas[j])
				}
			}
		}
	}
	return -1
}

// excessEnd is the end of the last batch that must go for the batches
// from the log start on to shed excess bytes: the first batches, in
// order, until the bytes before one reach excess; -1 if excess <= 0.
func (pd *partData) excessEnd(excess int64) int64 {
	end := int64(-1)
	for si := range pd.segments {
		ix := &pd.segments[si].index
		for k, ch := range ix.chunks {
			if excess <= 0 {
				return end
			}
			if live := ch.bytes - ix.headBytesOf(k); excess > live {
				excess -= live
				end = batchEnd(&ch.last)
				continue
			}
			metas := ix.load(k)
			for j := ix.liveStart(k); j < len(metas) && excess > 0; j++ {
				end = batchEnd(&metas[j])
				excess -= int64(metas[j].nbytes)
			}
		}
	}
	return end
}

// bytesFrom is the bytes of the batches whose last record is at or after
// start. Offsets only grow along the index, so every chunk but the one
// that start falls in answers from its summary.
func (pd *partData) bytesFrom(start int64) int64 {
	var n int64
	prevEnd := int64(math.MinInt64)
	for si := range pd.segments {
		ix := &pd.segments[si].index
		for k, ch := range ix.chunks {
			switch {
			case prevEnd > start:
				n += ch.bytes - ix.headBytesOf(k)
			case batchEnd(&ch.last) <= start:
			default:
				metas := ix.load(k)
				for j := ix.liveStart(k); j < len(metas); j++ {
					if batchEnd(&metas[j]) > start {
						n += int64(metas[j].nbytes)
					}
				}
			}
			prevEnd = batchEnd(&ch.last)
		}
	}
	return n
}

// batchInTx is what produce records as a batch's inTx: a transactional
// data batch. The .idx entry says so too; this is for a batch without one.
func batchInTx(attributes int16) bool {
	return attributes&0x10 != 0 && attributes&0x20 == 0
}
