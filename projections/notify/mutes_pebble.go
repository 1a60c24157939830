package notify

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/internal/pebblekv"
)

// PebbleMutes keeps mutes in the embedded store, one key a mute:
//
//	mu/<account>/<conversation>  the end, Unix ms (8 bytes; 0 for none)
//
// Account ids never hold '/', so the separator is unambiguous.
type PebbleMutes struct {
	db *pebble.DB
	// mu makes the count and the write of Mute one step.
	mu sync.Mutex
}

var _ Mutes = (*PebbleMutes)(nil)

// NewPebbleMutes returns the mutes of db.
func NewPebbleMutes(db *pebble.DB) *PebbleMutes { return &PebbleMutes{db: db} }

func mutePrefix(a domain.AccountID) []byte { return []byte("mu/" + string(a) + "/") }
func muteKey(a domain.AccountID, c domain.ConversationID) []byte {
	return append(mutePrefix(a), c.String()...)
}

// Mute implements Mutes.
func (p *PebbleMutes) Mute(ctx context.Context, account domain.AccountID, c domain.ConversationID, until time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	mine, ended, err := p.scan(account, time.Now())
	if err != nil {
		return err
	}
	if _, ok := mine[c]; !ok && len(mine) >= MaxMutes {
		return tooMany(account)
	}
	b := p.db.NewBatch()
	defer b.Close()
	for _, k := range ended { // a mute keeps none of the account's ended ones
		if err := b.Delete(k, nil); err != nil {
			return err
		}
	}
	if err := b.Set(muteKey(account, c), binary.BigEndian.AppendUint64(nil, uint64(untilMillis(until))), nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// Unmute implements Mutes.
func (p *PebbleMutes) Unmute(_ context.Context, account domain.AccountID, c domain.ConversationID) error {
	return p.db.Delete(muteKey(account, c), pebble.Sync)
}

// UnmuteAll implements Mutes: one range deletion of the account's keys.
func (p *PebbleMutes) UnmuteAll(_ context.Context, account domain.AccountID) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	prefix := mutePrefix(account)
	it, err := pebblekv.Prefix(p.db, prefix)
	if err != nil {
		return false, err
	}
	had := it.First()
	if err := errors.Join(it.Error(), it.Close()); err != nil || !had {
		return false, err
	}
	end := append([]byte(nil), prefix...)
	end[len(end)-1]++ // '/' + 1: past every key under the prefix
	return true, p.db.DeleteRange(prefix, end, pebble.Sync)
}

// MutedUntil implements Mutes.
func (p *PebbleMutes) MutedUntil(_ context.Context, account domain.AccountID, c domain.ConversationID) (time.Time, bool, error) {
	v, ok, err := pebblekv.Get(p.db, muteKey(account, c))
	if err != nil || !ok || len(v) != 8 {
		return time.Time{}, false, err
	}
	return fromMillis(int64(binary.BigEndian.Uint64(v))), true, nil
}

// MutesOf implements Mutes.
func (p *PebbleMutes) MutesOf(_ context.Context, account domain.AccountID, now time.Time) (map[domain.ConversationID]time.Time, error) {
	out, _, err := p.scan(account, now)
	return out, err
}

// scan reads account's mutes: those in force at now, and the keys of the
// ended ones.
func (p *PebbleMutes) scan(account domain.AccountID, now time.Time) (map[domain.ConversationID]time.Time, [][]byte, error) {
	prefix := mutePrefix(account)
	it, err := pebblekv.Prefix(p.db, prefix)
	if err != nil {
		return nil, nil, err
	}
	defer it.Close()
	out := map[domain.ConversationID]time.Time{}
	var ended [][]byte
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, nil, err
		}
		if len(v) != 8 {
			continue
		}
		c, err := domain.ParseConversationID(string(it.Key()[len(prefix):]))
		if err != nil {
			continue
		}
		if until := fromMillis(int64(binary.BigEndian.Uint64(v))); Muted(until, now) {
			out[c] = until
		} else {
			ended = append(ended, slices.Clone(it.Key()))
		}
	}
	return out, ended, it.Error()
}
