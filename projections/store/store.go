// Package store is the durable message history projection: every accepted
// message, forever (R5) or, with a history retention, until the retention
// job removes it (Expired, Remove), leaving a floor per conversation. Sync
// reads it when the cache cannot answer.
package store

import (
	"context"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
)

// Name is the projection's stable name (its consumer group when durable).
// Renaming it re-consumes the whole log.
const Name = "parley.projection.store"

// Store is the message history port. Every adapter passes the contract
// suite in storetest.
type Store interface {
	// Save stores messages. A message already stored (same conversation and
	// msgid, or same message id) is skipped, so saving is idempotent; so is
	// a message at or below its conversation's floor (see Remove).
	Save(ctx context.Context, msgs ...domain.Message) error
	// After returns up to limit messages of conv with msgid > after in msgid
	// order, and whether more follow.
	After(ctx context.Context, conv domain.ConversationID, after domain.MsgID, limit int) ([]domain.Message, bool, error)
	// ByClientMsgID finds the message account sent with clientMsgID, or
	// edited with it (an edit's client message id names the message it
	// edited), as the store holds it now.
	ByClientMsgID(ctx context.Context, account domain.AccountID, clientMsgID string) (domain.Message, bool, error)
	// Amend applies edits and deletions, in order, to the messages they
	// name (domain.Amendment.Apply): the latest body and its time, or a
	// tombstone without body. A change to a message the store does not hold,
	// or one already applied, changes nothing. An edit's client message id
	// is recorded like a send's, unless the account used it already.
	Amend(ctx context.Context, changes ...domain.Amendment) error
	// Changes returns the latest form of up to limit messages of conv that
	// were changed (edited, deleted, erased) after they were sent: those
	// with msgid <= after and revision > after, in revision order (then
	// msgid order, for the messages one erasure changed), and
	// whether more follow. A device whose last msgid is after missed
	// exactly these changes (a change to a later message is later in the
	// log than that message, which the device does not hold).
	Changes(ctx context.Context, conv domain.ConversationID, after domain.MsgID, limit int) ([]domain.Message, bool, error)
	// Message returns the message at msgid id of conv.
	Message(ctx context.Context, conv domain.ConversationID, id domain.MsgID) (domain.Message, bool, error)

	// Expired finds the history that the retention removes at cutoff,
	// reading at most about max messages: conversations whose oldest held
	// messages were sent before cutoff, each with the floor that removes
	// the run of them (at most max messages each). It changes nothing.
	Expired(ctx context.Context, cutoff time.Time, max int) ([]Floor, error)
	// Remove raises each conversation's floor to Through (a floor never
	// falls) and removes its messages at or below it, with the client
	// message ids they were sent with, in one short write. It returns how
	// many messages it removed. Save skips a message at or below its
	// conversation's floor, so that a replay of the log does not bring a
	// removed message back.
	Remove(ctx context.Context, floors ...Floor) (int, error)
	// GoneThrough is conv's floor: the last msgid the retention removed,
	// 0 when nothing is gone.
	GoneThrough(ctx context.Context, conv domain.ConversationID) (domain.MsgID, error)
	// Erase turns every message e covers (domain.Erasure.Apply) in the
	// conversations in accepts into a tombstone, at e's revision (a
	// position of the partition of those conversations, so no other
	// conversation is touched). Erasing again changes nothing.
	Erase(ctx context.Context, e domain.Erasure, in func(domain.ConversationID) bool) error
}

// Projection writes MessageSent records into a Store.
type Projection struct{ store Store }

// NewProjection returns the store projection.
func NewProjection(s Store) *Projection { return &Projection{store: s} }

// Apply implements projections.Projection.
func (p *Projection) Apply(ctx context.Context, r projections.Record) error {
	if e, in, ok, err := r.Erasure(); ok {
		if err != nil {
			return err
		}
		return p.store.Erase(ctx, e, in)
	}
	if a, ok, err := r.Amendment(); ok {
		if err != nil {
			return err
		}
		return p.store.Amend(ctx, a)
	}
	m, ok, err := r.Message()
	if !ok || err != nil {
		return err
	}
	return p.store.Save(ctx, m)
}

// ApplyBatch implements projections.Batcher: one Save for each run of
// messages, one Amend for each run of changes between them, in log order
// (a change follows the message it names).
func (p *Projection) ApplyBatch(ctx context.Context, recs []projections.Record) error {
	return projections.Runs(recs, func(msgs []domain.Message) error {
		return p.store.Save(ctx, msgs...)
	}, func(changes []domain.Amendment) error {
		return p.store.Amend(ctx, changes...)
	}, func(e domain.Erasure, in func(domain.ConversationID) bool) error {
		return p.store.Erase(ctx, e, in)
	})
}
