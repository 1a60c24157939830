package keys

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/parley-chat/parley/events"
)

// Pebble keeps keys in the embedded store of a single node:
// "dk/<id>" holds "<account>\x00<secret>", "da/<account>" the id of the
// account's live key. Destroy deletes both and syncs the write-ahead log,
// then compacts their range so that the secret leaves the store's files,
// not just its index.
type Pebble struct {
	db *pebble.DB
	mu sync.Mutex // one process owns the store; creating a key is read-then-write
}

// NewPebble returns the key store in db.
func NewPebble(db *pebble.DB) *Pebble { return &Pebble{db: db} }

func idKey(id string) []byte           { return []byte("dk/" + id) }
func accountKey(account string) []byte { return []byte("da/" + account) }

// Current implements Store.
func (p *Pebble) Current(_ context.Context, account string) (Key, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id, ok, err := p.get(accountKey(account))
	if err != nil {
		return Key{}, err
	}
	if ok {
		return p.key(string(id))
	}
	k := newKey(account)
	b := p.db.NewBatch()
	defer b.Close()
	if err := b.Set(idKey(k.ID), append([]byte(account+"\x00"), k.Secret...), nil); err != nil {
		return Key{}, err
	}
	if err := b.Set(accountKey(account), []byte(k.ID), nil); err != nil {
		return Key{}, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return Key{}, fmt.Errorf("cannot store a data key: %w", err)
	}
	return k, nil
}

// Key implements Store.
func (p *Pebble) Key(_ context.Context, id string) (Key, error) {
	return p.key(id)
}

func (p *Pebble) key(id string) (Key, error) {
	v, ok, err := p.get(idKey(id))
	if err != nil {
		return Key{}, err
	}
	if !ok {
		return Key{}, events.ErrKeyDestroyed
	}
	account, secret, found := strings.Cut(string(v), "\x00")
	if !found {
		return Key{}, fmt.Errorf("cannot read data key %s: malformed", id)
	}
	return Key{ID: id, Account: account, Secret: []byte(secret)}, nil
}

// Destroy implements Store.
func (p *Pebble) Destroy(ctx context.Context, account string) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id, ok, err := p.get(accountKey(account))
	if err != nil || !ok {
		return nil, err
	}
	b := p.db.NewBatch()
	defer b.Close()
	if err := b.Delete(idKey(string(id)), nil); err != nil {
		return nil, err
	}
	if err := b.Delete(accountKey(account), nil); err != nil {
		return nil, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, fmt.Errorf("cannot destroy the data keys of %s: %w", account, err)
	}
	// A deletion is a tombstone over the value until compaction drops
	// both: compact the key's range now, so the secret is not left in a
	// table file. The write-ahead log that held the Set is recycled as
	// the memtable flushes.
	if err := p.db.Compact(ctx, idKey(string(id)), append(idKey(string(id)), 0), true); err != nil {
		return nil, fmt.Errorf("cannot compact the destroyed key of %s: %w", account, err)
	}
	return []string{string(id)}, nil
}

func (p *Pebble) get(key []byte) ([]byte, bool, error) {
	v, closer, err := p.db.Get(key)
	if err == pebble.ErrNotFound {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), true, nil
}
