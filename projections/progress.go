// Package projections turns the event log into read models. Each projection
// is a Watermill handler with a stable name (its consumer group when
// durable); every handler is idempotent, so replaying any part of the log
// changes nothing (I4). Progress records, per partition, how far a read
// model has applied the log, so a reader can wait until a read model holds
// everything that was acknowledged before it asked (I3).
package projections

import "context"

// Tracker records how far a read model has applied each partition, and lets
// readers wait for it. Advance is called only after a record is applied, so
// a tracker may lag its read model but never lead it. projections/progress
// implements it, in memory or beside a durable read model's data so that
// readers in other processes see it.
type Tracker interface {
	// Advance records that the record at offset of partition is applied.
	Advance(partition int32, offset int64)
	// Next is the offset after the last applied one of partition.
	Next(partition int32) int64
	// WaitFor returns once every record of partition below end is applied.
	WaitFor(ctx context.Context, partition int32, end int64) error
	// WaitForAll is WaitFor for every partition in ends.
	WaitForAll(ctx context.Context, ends map[int32]int64) error
}
