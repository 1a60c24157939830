package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
)

// Record is one event with its place in the log.
type Record struct {
	Event    events.Event
	Position events.Position
	// MsgID is the msgid the position maps to (meaningful for MessageSent).
	MsgID domain.MsgID
	// Timestamp is the broker's record time.
	Timestamp time.Time
}

// Projection applies records to a read model. Apply must be idempotent: it
// may see a record again after a crash or a replay. An error makes the
// record redelivered (after a pause) until it succeeds; a record that can
// never apply (it fails validation) is reported by returning a
// *PoisonError, then skipped so it does not stall its partition.
type Projection interface {
	Apply(ctx context.Context, r Record) error
}

// PoisonError marks a record that no retry can apply.
type PoisonError struct{ Err error }

func (e *PoisonError) Error() string { return "poison record: " + e.Err.Error() }
func (e *PoisonError) Unwrap() error { return e.Err }

// Handler adapts a projection to a Watermill handler. It decodes the record,
// maps its position to a msgid with epoch, applies it, and then advances
// progress. Unknown event names are skipped (a newer producer must not stop
// an older projector), as are poison records, each with a log line.
func Handler(name string, p Projection, epoch uint8, progress Tracker, log *slog.Logger) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		ctx := msg.Context()
		part, ok1 := wkafka.MessagePartitionFromCtx(ctx)
		off, ok2 := wkafka.MessagePartitionOffsetFromCtx(ctx)
		if !ok1 || !ok2 {
			return fmt.Errorf("projection %s: message %s carries no log position", name, msg.UUID)
		}
		ts, _ := wkafka.MessageTimestampFromCtx(ctx)
		r, err := decode(msg, part, off, epoch, ts)
		if err == nil {
			err = p.Apply(ctx, r)
		}
		var poison *PoisonError
		switch {
		case err == nil:
		case errors.Is(err, events.ErrUnknownEvent):
			log.Warn("skipping unknown event", "projection", name, "partition", part, "offset", off, "err", err)
		case errors.As(err, &poison):
			log.Error("skipping poison record", "projection", name, "partition", part, "offset", off, "err", err)
		default:
			log.Warn("projection failed; will retry", "projection", name, "partition", part, "offset", off, "err", err)
			return err
		}
		progress.Advance(part, off)
		return nil
	}
}

// Part is one projection of a Fanout, with its own tracker.
type Part struct {
	Name       string
	Projection Projection
	Progress   Tracker
}

// Fanout is one handler that applies every record to several projections in
// order, advancing each one's tracker. Read models rebuilt in memory at
// every start need no consumer group of their own, and one reader of the log
// costs the broker a fifth of five: the projections stay separate, they
// just share the consumer. Order matters: a projection that reads another's
// model (push reads groups) comes after it.
type Fanout []Part

// Apply implements Projection: the first error stops (and the record is
// redelivered to every part; each part is idempotent).
func (f Fanout) Apply(ctx context.Context, r Record) error {
	var poisoned error
	for _, p := range f {
		if p.Progress.Next(r.Position.Partition) > r.Position.Offset {
			continue // applied before a redelivery
		}
		err := p.Projection.Apply(ctx, r)
		var poison *PoisonError
		if errors.As(err, &poison) {
			// Skipped like any poison record; reported once, after the rest.
			poisoned, err = err, nil
		}
		if err != nil {
			return err
		}
		p.Progress.Advance(r.Position.Partition, r.Position.Offset)
	}
	return poisoned
}

func decode(msg *message.Message, part int32, off int64, epoch uint8, ts time.Time) (Record, error) {
	return Decode(msg.Metadata.Get(events.MetadataName), msg.Payload, events.Position{Partition: part, Offset: off}, epoch, ts)
}

// Decode makes a Record of a raw log record: its versioned name, payload,
// position and time. An unknown name gives events.ErrUnknownEvent; a record
// that cannot be decoded gives a *PoisonError.
func Decode(name string, payload []byte, pos events.Position, epoch uint8, ts time.Time) (Record, error) {
	e, err := events.Decode(name, payload)
	if err != nil {
		if errors.Is(err, events.ErrUnknownEvent) {
			return Record{}, err
		}
		return Record{}, &PoisonError{Err: err}
	}
	id, err := events.MsgID(epoch, pos.Offset)
	if err != nil {
		return Record{}, &PoisonError{Err: err}
	}
	return Record{Event: e, Position: pos, MsgID: id, Timestamp: ts}, nil
}

// Message maps a MessageSent record to its domain message; any other event
// gives ok false. A MessageSent that fails validation is poison.
func (r Record) Message() (m domain.Message, ok bool, err error) {
	e, ok := r.Event.(events.MessageSent)
	if !ok {
		return domain.Message{}, false, nil
	}
	m, err = e.Message(r.MsgID)
	if err != nil {
		return domain.Message{}, true, &PoisonError{Err: err}
	}
	return m, true, nil
}

// Batcher is a projection that can apply many records of one partition at
// once (one write for all of them). Records come in log order; a poison
// record inside the batch is skipped by the batcher, like the handler skips
// it alone.
type Batcher interface {
	ApplyBatch(ctx context.Context, recs []Record) error
}

// ApplyRecords applies recs, all of one partition and in log order, to p —
// in one call when p is a Batcher, else one by one — and then advances
// progress past the last. An error leaves progress where it was: the
// caller retries the whole batch, and every projection is idempotent.
func ApplyRecords(ctx context.Context, p Projection, recs []Record, progress Tracker) error {
	if len(recs) == 0 {
		return nil
	}
	if b, ok := p.(Batcher); ok {
		if err := b.ApplyBatch(ctx, recs); err != nil {
			return err
		}
	} else {
		for _, r := range recs {
			err := p.Apply(ctx, r)
			var poison *PoisonError
			if err != nil && !errors.As(err, &poison) {
				return err
			}
		}
	}
	last := recs[len(recs)-1].Position
	progress.Advance(last.Partition, last.Offset)
	return nil
}

// Messages maps the MessageSent records of recs to domain messages,
// skipping other events and poison records (reported through skip).
func Messages(recs []Record, skip func(Record, error)) []domain.Message {
	out := make([]domain.Message, 0, len(recs))
	for _, r := range recs {
		m, ok, err := r.Message()
		if err != nil {
			if skip != nil {
				skip(r, err)
			}
			continue
		}
		if ok {
			out = append(out, m)
		}
	}
	return out
}
