package keys

import (
	"context"
	"errors"
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
//
// Creating and destroying an account's key are read-then-write, so they
// take that account's lock; one process owns the store. Different
// accounts never wait for each other: their synced commits run
// concurrently and share the write-ahead log's fsyncs, so a crowd of
// first sends costs a few fsyncs, not one each in turn.
type Pebble struct {
	db *pebble.DB

	mu     sync.Mutex
	owners map[string]*accountLock // accounts whose key is being created or destroyed
}

// accountLock is one account's lock, kept while anyone holds or awaits it.
type accountLock struct {
	sync.Mutex
	users int
}

// NewPebble returns the key store in db.
func NewPebble(db *pebble.DB) *Pebble { return &Pebble{db: db, owners: map[string]*accountLock{}} }

// lock takes account's lock and returns its release.
func (p *Pebble) lock(account string) (unlock func()) {
	p.mu.Lock()
	l := p.owners[account]
	if l == nil {
		l = &accountLock{}
		p.owners[account] = l
	}
	l.users++
	p.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		p.mu.Lock()
		if l.users--; l.users == 0 {
			delete(p.owners, account)
		}
		p.mu.Unlock()
	}
}

func idKey(id string) []byte           { return []byte("dk/" + id) }
func accountKey(account string) []byte { return []byte("da/" + account) }

// Current implements Store. An account that has a key gets it without
// its lock: only a missing key (or one destroyed while read) takes it.
func (p *Pebble) Current(_ context.Context, account string) (Key, error) {
	if k, err := p.current(account); err == nil || !errors.Is(err, errNoKey) {
		return k, err
	}
	defer p.lock(account)()
	k, err := p.current(account)
	if !errors.Is(err, errNoKey) {
		return k, err
	}
	k = newKey(account)
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

// errNoKey: the account has no live key.
var errNoKey = errors.New("no live key")

// current reads account's live key, or fails with errNoKey.
func (p *Pebble) current(account string) (Key, error) {
	id, ok, err := p.get(accountKey(account))
	if err != nil {
		return Key{}, err
	}
	if !ok {
		return Key{}, errNoKey
	}
	k, err := p.key(string(id))
	if errors.Is(err, events.ErrKeyDestroyed) {
		return Key{}, errNoKey // destroyed between the two reads
	}
	return k, err
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
	defer p.lock(account)()
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
