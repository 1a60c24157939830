// Package store is the durable message history projection: every accepted
// message, forever (R5). Sync reads it when the cache cannot answer.
package store

import (
	"context"

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
	// msgid, or same message id) is skipped, so saving is idempotent.
	Save(ctx context.Context, msgs ...domain.Message) error
	// After returns up to limit messages of conv with msgid > after in msgid
	// order, and whether more follow.
	After(ctx context.Context, conv domain.ConversationID, after domain.MsgID, limit int) ([]domain.Message, bool, error)
	// ByClientMsgID finds the message account sent with clientMsgID.
	ByClientMsgID(ctx context.Context, account domain.AccountID, clientMsgID string) (domain.Message, bool, error)
}

// Projection writes MessageSent records into a Store.
type Projection struct{ store Store }

// NewProjection returns the store projection.
func NewProjection(s Store) *Projection { return &Projection{store: s} }

// Apply implements projections.Projection.
func (p *Projection) Apply(ctx context.Context, r projections.Record) error {
	m, ok, err := r.Message()
	if !ok || err != nil {
		return err
	}
	return p.store.Save(ctx, m)
}

// ApplyBatch implements projections.Batcher: one Save for the batch.
func (p *Projection) ApplyBatch(ctx context.Context, recs []projections.Record) error {
	msgs := projections.Messages(recs, nil)
	if len(msgs) == 0 {
		return nil
	}
	return p.store.Save(ctx, msgs...)
}
