// Package keys keeps the data keys that seal message bodies on the event
// log (crypto-shredding, see events.Seal): one live key per account, in a
// key store outside the log — the embedded store on a single node,
// PostgreSQL in a cluster — and destroyed when the account is erased.
// Ring puts a bounded in-memory cache in front of a store: the send path
// seals every message and every reader of the log opens every message, so
// neither may ask the store each time.
package keys

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/parley-chat/parley/events"
)

// Key is a stored data key.
type Key struct {
	ID      string
	Account string
	Secret  []byte
}

// Store keeps data keys. Every adapter passes the contract suite in
// keystest.
type Store interface {
	// Current returns account's live key, creating one if it has none.
	// Concurrent callers, in any process, get the same key.
	Current(ctx context.Context, account string) (Key, error)
	// Key returns the key called id, or events.ErrKeyDestroyed when it
	// was destroyed or never existed.
	Key(ctx context.Context, id string) (Key, error)
	// Destroy deletes every key of account for good and returns their
	// ids; none when it has none (erased already, or it never sent).
	Destroy(ctx context.Context, account string) ([]string, error)
}

// newKey makes a random key for account.
func newKey(account string) Key {
	var id [16]byte
	secret := make([]byte, events.KeyBytes)
	if _, err := rand.Read(id[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	if _, err := rand.Read(secret); err != nil {
		panic(err)
	}
	return Key{ID: hex.EncodeToString(id[:]), Account: account, Secret: secret}
}

// Config tunes a Ring.
type Config struct {
	// MaxKeys bounds the cache: at most this many keys of each kind
	// (current keys by account, keys by id) are kept, about 300 bytes
	// each with the prepared cipher. Default 65536.
	MaxKeys int
	// TTL is how long a cached key is trusted: a key destroyed by another
	// process (an erasure through another gateway) may still seal sends
	// in this one for this long. Default 30s.
	TTL time.Duration
}

func (c *Config) setDefaults() {
	if c.MaxKeys == 0 {
		c.MaxKeys = 1 << 16
	}
	if c.TTL == 0 {
		c.TTL = 30 * time.Second
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxKeys < 0 {
		errs = append(errs, fmt.Errorf("keys: max keys %d must not be negative", c.MaxKeys))
	}
	if c.TTL < 0 {
		errs = append(errs, fmt.Errorf("keys: ttl %v must not be negative", c.TTL))
	}
	return errors.Join(errs...)
}

// Ring is the key store with a cache in front: it implements events.Keys.
// It caches keys it found, never a destroyed key's absence, so that the
// moment a key is destroyed no reader of this process can open with it
// (Destroy and Forget drop it here; other processes drop it when they
// read the AccountErased record, or at the latest after TTL).
type Ring struct {
	store Store
	cfg   Config
	now   func() time.Time

	mu        sync.Mutex
	byAccount *lru
	byID      *lru
}

// NewRing returns a Ring over store.
func NewRing(store Store, cfg Config) (*Ring, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Ring{store: store, cfg: cfg, now: time.Now, byAccount: newLRU(cfg.MaxKeys), byID: newLRU(cfg.MaxKeys)}, nil
}

// Current implements events.Keys.
func (r *Ring) Current(ctx context.Context, account string) (events.DataKey, error) {
	if k, ok := r.cached(r.byAccount, account); ok {
		return k, nil
	}
	stored, err := r.store.Current(ctx, account)
	if err != nil {
		return events.DataKey{}, err
	}
	return r.keep(stored, true)
}

// Key implements events.Keys.
func (r *Ring) Key(ctx context.Context, id string) (events.DataKey, error) {
	if k, ok := r.cached(r.byID, id); ok {
		return k, nil
	}
	stored, err := r.store.Key(ctx, id)
	if err != nil {
		return events.DataKey{}, err
	}
	return r.keep(stored, false)
}

// Destroy destroys account's keys in the store and drops them here.
func (r *Ring) Destroy(ctx context.Context, account string) ([]string, error) {
	r.Forget(account)
	ids, err := r.store.Destroy(ctx, account)
	r.Forget(account) // a concurrent Current may have cached it meanwhile
	return ids, err
}

// Forget drops account's keys from the cache.
func (r *Ring) Forget(account string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byAccount.remove(account)
	r.byID.removeIf(func(k events.DataKey) bool { return k.Account == account })
}

func (r *Ring) cached(c *lru, name string) (events.DataKey, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return c.get(name, r.now())
}

func (r *Ring) keep(stored Key, current bool) (events.DataKey, error) {
	k, err := events.NewDataKey(stored.ID, stored.Account, stored.Secret)
	if err != nil {
		return events.DataKey{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	until := r.now().Add(r.cfg.TTL)
	if current {
		r.byAccount.put(stored.Account, k, until)
	}
	r.byID.put(stored.ID, k, until)
	return k, nil
}
