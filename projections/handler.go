package projections

import (
	"context"
	"errors"
	"time"

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

// Amendment maps a MessageEdited or MessageDeleted record to its domain
// change, with the record's position as its revision; any other event,
// and an edit whose body is erased, gives ok false. One that fails
// validation is poison.
func (r Record) Amendment() (a domain.Amendment, ok bool, err error) {
	switch e := r.Event.(type) {
	case events.MessageEdited:
		if e.Erased {
			// The new body is gone, and so is the one it replaced (the
			// same account's): the erasure that follows on the log
			// tombstones the message at its own revision, as it did for
			// read models that read the edit before the erasure.
			return domain.Amendment{}, false, nil
		}
		a, err = e.Amendment(r.MsgID)
	case events.MessageDeleted:
		a, err = e.Amendment(r.MsgID)
	default:
		return domain.Amendment{}, false, nil
	}
	if err != nil {
		return domain.Amendment{}, true, &PoisonError{Err: err}
	}
	return a, true, nil
}

// Erasure maps an AccountErased record to the domain erasure and the
// filter of the conversations its sweep must cover: those of the record's
// own partition (the account's messages in other partitions are swept by
// the records there, each after its partition's earlier messages). Any
// other event gives ok false; an invalid one is poison.
func (r Record) Erasure() (e domain.Erasure, in func(domain.ConversationID) bool, ok bool, err error) {
	v, ok := r.Event.(events.AccountErased)
	if !ok {
		return domain.Erasure{}, nil, false, nil
	}
	a, err := domain.ParseAccountID(v.Account)
	if err != nil {
		return domain.Erasure{}, nil, true, &PoisonError{Err: err}
	}
	part, n := r.Position.Partition, v.Partitions
	in = func(c domain.ConversationID) bool { return n < 1 || events.PartitionFor(c.String(), n) == part }
	return domain.Erasure{Account: a, At: time.UnixMilli(v.ErasedAt), Revision: r.MsgID}, in, true, nil
}

// Batcher is a projection that can apply many records of one partition at
// once (one write for all of them). Records come in log order; a poison
// record inside the batch is skipped by the batcher, like the handler skips
// it alone.
type Batcher interface {
	ApplyBatch(ctx context.Context, recs []Record) error
}

// Preparer is a projection that applies records one by one but can look
// up, in one go, what a batch of one partition's records will need. The
// runner calls Prepare before it applies recs and applies them under the
// context it returns. A failed preparation returns ctx as it was: each
// record then looks up its own.
type Preparer interface {
	Prepare(ctx context.Context, recs []Record) context.Context
}

// OnlyMessages reports whether every record of recs is a new message: a
// read model that finds, applying such a record again, that it holds the
// message already may let its stored progress lag behind such a batch
// (progress.PebbleMarks.CommitThrough).
func OnlyMessages(recs []Record) bool {
	for _, r := range recs {
		if _, ok := r.Event.(events.MessageSent); !ok {
			return false
		}
	}
	return true
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

// Runs splits recs, in log order, into runs of messages and runs of
// changes, skipping other events and poison records, and hands each run
// to its function in turn: a read model that writes messages and changes
// apart applies them in the log's order. An erasure goes to erase, after
// everything before it.
func Runs(recs []Record, saveMsgs func([]domain.Message) error, amend func([]domain.Amendment) error,
	erase func(domain.Erasure, func(domain.ConversationID) bool) error) error {
	var msgs []domain.Message
	var changes []domain.Amendment
	flush := func() error {
		if len(msgs) > 0 {
			if err := saveMsgs(msgs); err != nil {
				return err
			}
			msgs = nil
		}
		if len(changes) > 0 {
			if err := amend(changes); err != nil {
				return err
			}
			changes = nil
		}
		return nil
	}
	for _, r := range recs {
		if e, in, ok, err := r.Erasure(); ok {
			if err != nil {
				continue
			}
			if err := flush(); err != nil {
				return err
			}
			if err := erase(e, in); err != nil {
				return err
			}
			continue
		}
		if a, ok, err := r.Amendment(); ok {
			if err != nil {
				continue
			}
			if len(msgs) > 0 {
				if err := flush(); err != nil {
					return err
				}
			}
			changes = append(changes, a)
			continue
		}
		m, ok, err := r.Message()
		if err != nil || !ok {
			continue
		}
		if len(changes) > 0 {
			if err := flush(); err != nil {
				return err
			}
		}
		msgs = append(msgs, m)
	}
	return flush()
}
