// Package idempotency reserves a client message id before its message is
// appended, so that every resend of it — to any recipient, from any device
// of the account, through any gateway, however far the read models lag —
// finds the first attempt: its ack once it has one, or the attempt still
// under way (I4). The in-memory adapter serves one process; the Redis
// adapter a cluster. A reservation lives for a TTL; after it the durable
// history (the store's client message ids) answers for the message.
package idempotency

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
)

// Key names one client message id of one account: its scope (docs/protocol.md).
type Key struct {
	Account     domain.AccountID
	ClientMsgID string
}

// Ack is what a finished attempt answered.
type Ack struct {
	MsgID        domain.MsgID
	MessageID    uuid.UUID
	Conversation domain.ConversationID
	ServerTime   time.Time // millisecond precision
}

// State is what Reserve found.
type State int

const (
	// Reserved: the caller holds the key now and makes the attempt; it must
	// end it with Complete or Abandon.
	Reserved State = iota + 1
	// Pending: another attempt holds the key and its lease has not run out.
	// Ask again later.
	Pending
	// Done: an attempt finished; Entry.Ack is its ack.
	Done
)

// Entry is the answer of Reserve.
type Entry struct {
	State State
	// Token identifies the caller's attempt (Reserved only).
	Token string
	// Earlier are the partitions that earlier attempts of the key, which
	// ended without an ack (abandoned, or their lease ran out), may have
	// appended to (Reserved only). The caller must make sure the record of
	// truth holds those partitions before it decides nothing landed.
	Earlier []int32
	// Ack is the finished attempt's ack (Done only).
	Ack Ack
}

// ErrNotOwner: the attempt no longer holds the key (its lease ran out and
// another attempt took it over, or the reservation expired).
var ErrNotOwner = errors.New("the attempt no longer holds its reservation")

// Reservations is the port. Every adapter passes idempotencytest.
type Reservations interface {
	// Reserve claims k for an attempt that will append to partition,
	// unless an ack or a live attempt holds k. A new attempt holds k for
	// lease; an attempt whose lease ran out, or that was abandoned, is
	// taken over (Entry.Earlier names where it may have appended). The
	// reservation lives for ttl from the last change.
	Reserve(ctx context.Context, k Key, partition int32, lease, ttl time.Duration) (Entry, error)
	// Extend renews the lease of the attempt token on k.
	Extend(ctx context.Context, k Key, token string, lease time.Duration) error
	// Complete records the ack of the attempt token on k; every later
	// Reserve of k finds it, for ttl.
	Complete(ctx context.Context, k Key, token string, ack Ack, ttl time.Duration) error
	// Abandon ends the attempt token on k without an ack: the next Reserve
	// takes k over at once.
	Abandon(ctx context.Context, k Key, token string) error
	// Forget drops the finished reservations of keys, once the record of
	// truth holds their messages, in as few round trips as it can. A
	// reservation still pending is kept.
	Forget(ctx context.Context, keys ...Key) error
}

// newToken names an attempt: unique across the processes sharing a store
// and across their restarts, by a random prefix per process and a count.
// A random uuid each cost a read of the system's randomness per send,
// more than the rest of a reservation in memory; the token never leaves
// the servers, so it need not be unguessable.
func newToken() string {
	return tokenPrefix + strconv.FormatUint(tokenCount.Add(1), 36)
}

var (
	tokenPrefix = uuid.NewString() + "/"
	tokenCount  atomic.Uint64
)
