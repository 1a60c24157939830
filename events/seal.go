package events

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// Crypto-shredding. Every body a sender puts on the log (MessageSent.v1's
// and MessageEdited.v1's) is sealed with AES-256-GCM under a data key of
// the sender's account; the key lives outside the log, in a key store. To
// erase an account, the key store destroys its keys: the log's records
// stay as they are (the log is immutable), but no one can open their
// bodies any more, and every reader of the log — the projections, a
// replay, a tap — turns such a body into a tombstone.

// KeyBytes is the length of a data key: AES-256.
const KeyBytes = 32

// nonceBytes is GCM's standard nonce. Nonces are random: at 2^32 messages
// per key the chance of a repeat stays below 2^-32, and a key serves one
// account's sends only.
const nonceBytes = 12

// ErrKeyDestroyed: the data key a body was sealed with is gone (its
// account was erased), or was never known to this key store. The body
// cannot be opened again; readers treat it as erased.
var ErrKeyDestroyed = errors.New("data key destroyed")

// DataKey is one account's key, ready to seal and open.
type DataKey struct {
	// ID names the key in sealed events (bodyKey).
	ID string
	// Account is the account whose bodies the key seals.
	Account string
	aead    cipher.AEAD
}

// NewDataKey prepares a key of KeyBytes bytes for sealing and opening.
func NewDataKey(id, account string, secret []byte) (DataKey, error) {
	if len(secret) != KeyBytes {
		return DataKey{}, fmt.Errorf("cannot use data key %s: %d bytes, want %d", id, len(secret), KeyBytes)
	}
	block, err := aes.NewCipher(secret)
	if err != nil {
		return DataKey{}, fmt.Errorf("cannot use data key %s: %w", id, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return DataKey{}, fmt.Errorf("cannot use data key %s: %w", id, err)
	}
	return DataKey{ID: id, Account: account, aead: aead}, nil
}

// Keys finds data keys: the port the send path seals through and every
// reader of the log opens through. infra/keys implements it.
type Keys interface {
	// Current returns account's live data key, creating one if it has
	// none (its first send, or its first since it was erased).
	Current(ctx context.Context, account string) (DataKey, error)
	// Key returns the key called id. A destroyed or unknown key gives
	// ErrKeyDestroyed; any other error is transient (the store is down)
	// and the caller tries again.
	Key(ctx context.Context, id string) (DataKey, error)
}

// Seal returns e with its body sealed under its sender's current key, for
// the events that carry a body; other events come back unchanged.
func Seal(ctx context.Context, keys Keys, e Event) (Event, error) {
	switch v := e.(type) {
	case MessageSent:
		k, err := keys.Current(ctx, v.SenderAccount)
		if err != nil {
			return nil, fmt.Errorf("cannot seal a message of %s: %w", v.SenderAccount, err)
		}
		v.BodyKey, v.SealedBody = k.ID, k.seal([]byte(v.Body), v.additionalData())
		v.Body = ""
		return v, nil
	case MessageEdited:
		k, err := keys.Current(ctx, v.Account)
		if err != nil {
			return nil, fmt.Errorf("cannot seal an edit of %s: %w", v.Account, err)
		}
		v.BodyKey, v.SealedBody = k.ID, k.seal([]byte(v.Body), v.additionalData())
		v.Body = ""
		return v, nil
	}
	return e, nil
}

// Open returns e with its body opened, for a sealed MessageSent or
// MessageEdited; any other event, and a plaintext one written before
// bodies were sealed, comes back unchanged. A body whose key is destroyed
// comes back empty with Erased set: never an error, so that an erased
// record cannot stall its partition. A body that does not open under its
// key (the record was tampered with) is an error that wraps ErrTampered.
func Open(ctx context.Context, keys Keys, e Event) (Event, error) {
	switch v := e.(type) {
	case MessageSent:
		if v.BodyKey == "" {
			return v, nil
		}
		body, erased, err := open(ctx, keys, v.BodyKey, v.SenderAccount, v.SealedBody, v.additionalData())
		if err != nil {
			return nil, err
		}
		v.Body, v.Erased, v.SealedBody = body, erased, nil
		return v, nil
	case MessageEdited:
		if v.BodyKey == "" {
			return v, nil
		}
		body, erased, err := open(ctx, keys, v.BodyKey, v.Account, v.SealedBody, v.additionalData())
		if err != nil {
			return nil, err
		}
		v.Body, v.Erased, v.SealedBody = body, erased, nil
		return v, nil
	}
	return e, nil
}

// ErrTampered: a sealed body does not open under its key: the record was
// changed after it was written, or names another account's key.
var ErrTampered = errors.New("sealed body does not open")

func open(ctx context.Context, keys Keys, id, account string, sealed, ad []byte) (body string, erased bool, err error) {
	if keys == nil {
		return "", false, fmt.Errorf("cannot open a body sealed with key %s: no key store", id)
	}
	k, err := keys.Key(ctx, id)
	if errors.Is(err, ErrKeyDestroyed) {
		return "", true, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("cannot read data key %s: %w", id, err)
	}
	if k.Account != account {
		return "", false, fmt.Errorf("%w: key %s is %s's, the record names %s", ErrTampered, id, k.Account, account)
	}
	b, err := k.open(sealed, ad)
	if err != nil {
		return "", false, fmt.Errorf("%w: key %s: %v", ErrTampered, id, err)
	}
	return string(b), false, nil
}

// seal returns nonce ‖ ciphertext ‖ tag.
func (k DataKey) seal(plain, ad []byte) []byte {
	out := make([]byte, nonceBytes, nonceBytes+len(plain)+k.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return k.aead.Seal(out, out, plain, ad)
}

func (k DataKey) open(sealed, ad []byte) ([]byte, error) {
	if len(sealed) < nonceBytes+k.aead.Overhead() {
		return nil, errors.New("shorter than a nonce and a tag")
	}
	return k.aead.Open(nil, sealed[:nonceBytes], sealed[nonceBytes:], ad)
}

// additionalData binds a sealed body to its message, so that a body
// cannot be moved to another record and still open.
func (e MessageSent) additionalData() []byte {
	return []byte(MessageSentV1 + "\x00" + e.MessageID + "\x00" + e.Conversation + "\x00" + e.SenderAccount)
}

func (e MessageEdited) additionalData() []byte {
	return fmt.Appendf(nil, "%s\x00%s\x00%d\x00%s\x00%s", MessageEditedV1, e.Conversation, e.MsgID, e.Account, e.ClientMsgID)
}
