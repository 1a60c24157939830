// Package heapscan tells tests how much of the heap the garbage collector
// scans: the bytes of live objects that hold pointers. A structure laid
// out for the collector (no pointer per entry) adds next to nothing to it
// however many entries it holds.
package heapscan

import (
	"runtime"
	"runtime/metrics"
)

// Bytes collects garbage and returns the bytes of the heap the collector
// scans, as of that collection.
func Bytes() int64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}
