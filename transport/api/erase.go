package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections/conversations"
)

// ErrNoKeys: the service was built without a key store, so it can neither
// seal bodies nor erase an account.
var ErrNoKeys = errors.New("no key store: erasure is not available")

// EraseWait bounds how long Erase waits for the read models to apply the
// erasure before it answers with Applied false: the sweep reads the
// account's history, which takes longer than a read.
const EraseWait = 30 * time.Second

// Erasure is what erasing an account did.
type Erasure struct {
	Account domain.AccountID
	// Keys are the ids of the data keys destroyed: none when the account
	// was erased before (erasing again changes nothing more).
	Keys []string
	// ErasedAt is when the keys were destroyed.
	ErasedAt time.Time
	// Records is how many AccountErased records went on the log: one per
	// partition.
	Records int
	// Applied tells whether every read model of this service had applied
	// them when Erase returned (within EraseWait).
	Applied bool
}

// writable refuses a write while Config.WriteGate says so.
func (s *Service) writable() error {
	if s.cfg.WriteGate == nil {
		return nil
	}
	if err := s.cfg.WriteGate(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// append puts e on the log with its body sealed, if it carries one,
// waiting at most SendTimeout: a client's write (a send, an edit, a read
// mark, a group change) answers unavailable past it, so that a lost
// broker does not hold the connection's requests until it heals. The
// record may still land then (events.LateAppend).
func (s *Service) append(ctx context.Context, id string, e events.Event) (events.Position, error) {
	if err := s.writable(); err != nil {
		return events.Position{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	defer cancel()
	if s.cfg.Keys != nil {
		sealed, err := events.Seal(ctx, s.cfg.Keys, e)
		if err != nil {
			return events.Position{}, err
		}
		e = sealed
	}
	return s.log.Append(ctx, id, e)
}

// Erase erases an account (a service's request, never a user's): it
// destroys the account's data keys, so that no reader of the log can open
// the bodies it sent again, then appends AccountErased to every partition,
// so that every read model drops those bodies, its read cursors and its
// group memberships (its mutes are removed here), and waits for this service's read models to apply
// it. An account that has no key, no conversation, no group and no mute
// is unknown: domain.ErrNotFound, and nothing is appended. The memberships
// are removed by a GroupMembersRemoved for each of its groups but those
// it owns (an owner is always a member: it stays the group's owner),
// appended before the erasure. Erasing an erased account appends the
// records again and changes nothing.
func (s *Service) Erase(ctx context.Context, account string) (Erasure, error) {
	a, err := domain.ParseAccountID(account)
	if err != nil {
		return Erasure{}, err
	}
	if s.cfg.Keys == nil {
		return Erasure{}, fmt.Errorf("%w: %w", ErrUnavailable, ErrNoKeys)
	}
	if err := s.writable(); err != nil {
		return Erasure{}, err // before any key is destroyed or mute removed
	}
	groups, err := s.rm.Groups.GroupsOf(ctx, a)
	if err != nil {
		return Erasure{}, fmt.Errorf("cannot read the groups of %s: %w: %v", a, ErrUnavailable, err)
	}
	known := len(groups) > 0
	if !known {
		if known, err = s.hasConversations(ctx, a); err != nil {
			return Erasure{}, err
		}
	}
	// Which conversations it muted is its own: not on the log, so removed
	// here rather than by a read model. An account that only muted is
	// known too.
	muted, err := s.rm.Mutes.UnmuteAll(ctx, a)
	if err != nil {
		return Erasure{}, fmt.Errorf("cannot remove the mutes of %s: %w: %v", a, ErrUnavailable, err)
	}
	known = known || muted
	ids, err := s.cfg.Keys.Destroy(ctx, string(a))
	if err != nil {
		return Erasure{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !known && len(ids) == 0 {
		return Erasure{}, fmt.Errorf("account %s: %w", a, domain.ErrNotFound)
	}
	at := time.UnixMilli(s.cfg.Now().UnixMilli())
	// Memberships go as the account leaving each group: the event every
	// read model (and push, and a replay) already applies.
	for _, g := range groups {
		if g.Owner() == a {
			continue // an owner is always a member: no removal could apply
		}
		left := events.GroupMembersRemoved{Group: string(g.ID()), By: string(a), Accounts: []string{string(a)}, At: at.UnixMilli()}
		if _, err := s.log.Append(ctx, uuid.NewString(), left); err != nil {
			return Erasure{}, fmt.Errorf("%w: the keys are destroyed, but not every membership is removed; erase again: %v", ErrUnavailable, err)
		}
	}
	e := events.AccountErased{Account: string(a), Keys: ids, ErasedAt: at.UnixMilli(), Partitions: s.log.Partitions()}
	if e.Keys == nil {
		e.Keys = []string{}
	}
	// The keys are gone: if appending fails now, the bodies can no longer
	// be read from the log, and the read models drop them on the next
	// erasure of the account, which the caller retries.
	positions, err := s.log.AppendEvery(ctx, uuid.NewString(), e)
	if err != nil {
		return Erasure{}, fmt.Errorf("%w: the keys are destroyed, but the erasure is not on the log; erase again: %v", ErrUnavailable, err)
	}
	ends := make(map[int32]int64, len(positions))
	for _, p := range positions {
		ends[p.Partition] = p.Offset + 1
	}
	wctx, cancel := context.WithTimeout(ctx, EraseWait)
	defer cancel()
	applied := true
	for _, t := range []Progress{s.rm.StoreProgress, s.rm.CacheProgress, s.rm.ConversationsProgress, s.rm.GroupsProgress} {
		if t != nil && t.WaitForAll(wctx, ends) != nil {
			applied = false
			break
		}
	}
	return Erasure{Account: a, Keys: e.Keys, ErasedAt: at, Records: len(positions), Applied: applied}, nil
}

// hasConversations tells whether the conversation index lists any
// conversation of a.
func (s *Service) hasConversations(ctx context.Context, a domain.AccountID) (bool, error) {
	page, err := s.rm.Conversations.List(ctx, a, nil, conversations.Query{Limit: 1})
	if err != nil {
		return false, fmt.Errorf("cannot read the conversations of %s: %w: %v", a, ErrUnavailable, err)
	}
	return len(page.Entries) > 0, nil
}
