// Package api holds the operations every transport offers — send, sync, the
// conversation list and group administration — independent of WebSocket or
// HTTP. It validates and authorizes with the domain, appends events to the
// log, and reads the read models only once they hold everything that was
// acknowledged before the request (I3).
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/idempotency"
	"github.com/parley-chat/parley/infra/ratelimit"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/cache"
	"github.com/parley-chat/parley/projections/conversations"
	"github.com/parley-chat/parley/projections/notify"
	"github.com/parley-chat/parley/projections/store"
)

// ErrUnavailable: the log or a read model cannot serve the request now.
// Nothing was accepted; the client may retry.
var ErrUnavailable = errors.New("unavailable")

// Log is the event log as the service needs it.
type Log interface {
	Append(ctx context.Context, id string, e events.Event) (events.Position, error)
	// AppendEvery appends e to every partition, returning each position.
	AppendEvery(ctx context.Context, id string, e events.Event) ([]events.Position, error)
	// EndOffset is the offset the next record of partition will get; it
	// gives up when ctx ends.
	EndOffset(ctx context.Context, partition int32) (int64, error)
	EndOffsets(ctx context.Context) (map[int32]int64, error)
	Partitions() int32
	Epoch() uint8
}

// Progress tells how far a read model has applied the log.
type Progress = projections.Tracker

// Groups is the membership read model (projections/groups, or a cache in
// front of it). A model that caches also implements Refresher, and a
// refusal is checked again, fresh, before it is answered.
type Groups interface {
	Group(ctx context.Context, g domain.GroupID) (*domain.Group, bool, error)
	IsMember(ctx context.Context, g domain.GroupID, a domain.AccountID) (exists, member bool, err error)
	GroupsOf(ctx context.Context, a domain.AccountID) ([]*domain.Group, error)
	GroupIDsOf(ctx context.Context, a domain.AccountID) ([]domain.GroupID, error)
}

// Refresher reads a group past a cache (and caches what it read).
type Refresher interface {
	Refresh(ctx context.Context, g domain.GroupID) (*domain.Group, bool, error)
}

// Conversations is the conversation index, read cursors included.
type Conversations interface {
	List(ctx context.Context, account domain.AccountID, groups []domain.GroupID, q conversations.Query) (conversations.Page, error)
	conversations.Reads
}

// ReadModels are the read models with their progress.
type ReadModels struct {
	Store                 store.Store
	StoreProgress         Progress
	Cache                 cache.Cache
	CacheProgress         Progress
	Groups                Groups
	GroupsProgress        Progress
	Conversations         Conversations
	ConversationsProgress Progress
	// Mutes are the conversations each account muted for notifications.
	Mutes notify.Mutes
}

// Config tunes the service.
type Config struct {
	// ReadTimeout bounds how long a read waits for a lagging read model
	// before it answers unavailable. Default 5s.
	ReadTimeout time.Duration
	// SendTimeout bounds how long a client's write (a send, an edit or
	// delete, a read mark, a group change) waits for the log to take its
	// record; past it the request answers unavailable and the client
	// retries (a send with the same client message id). Default 5s.
	SendTimeout time.Duration
	// WriteGate, if set, is asked before every write — an append to the
	// log, a mute or unmute, an erasure — and a write it answers an error
	// is refused unavailable before it does anything (a single node whose
	// disk is nearly full: cmd/parley/node).
	WriteGate func() error
	// CacheWait bounds how long a sync waits for the cache to catch up with
	// the log before it reads the store instead. Default 200ms.
	CacheWait time.Duration
	// CacheWindow is how recent lastTime must be for sync to try the cache
	// (R6). Default cache.Retention, 7 days.
	CacheWindow time.Duration
	// EditWindow is how long after sending a message its sender may edit
	// it. Default domain.DefaultEditWindow, 48 hours.
	EditWindow time.Duration
	// DefaultLimit and MaxLimit bound a sync page. Defaults 50 and 200.
	DefaultLimit, MaxLimit int
	// Now is the clock; time.Now by default.
	Now func() time.Time
	// Observer receives what metrics need; nil observes nothing.
	Observer Observer
	// Reservations hold each (account, clientMsgId) from before its append
	// until the store holds the message: in memory for a single node, in
	// Redis for a cluster. Default: in memory.
	Reservations Reservations
	// ReservationTTL is how long a reservation lives when nobody forgets
	// it (the process that completed it died before the store held the
	// message). Default DefaultReservationTTL.
	ReservationTTL time.Duration
	// CompleteAfterAck answers a send before its reservation's completion
	// is written, which then happens in the background: one round trip
	// less per send when Reservations are remote (Redis). Until it lands,
	// a resend finds the attempt under way and waits for it; if it never
	// lands, the reservation lapses and a resend finds the message in the
	// store (transport/api/idempotency.go explains why this is safe).
	CompleteAfterAck bool
	// SendRate bounds what one account sends through this process, over
	// all its devices and both transports: each send and edit costs
	// MessageCost (SendCost plus its body's bytes as the pushes encode
	// them), taken from a budget that fills at
	// SendRate bytes a second up to SendBurst. A send past it is refused
	// (LimitError, rate_limited) before anything is done. It keeps one
	// account from flooding another's connections faster than they can
	// read (4005) and from multiplying its per-connection rate limit by
	// opening connections. Default DefaultSendRate; negative turns it off.
	// Service calls (SendRequest.Trusted) are not counted.
	SendRate float64
	// SendBurst is the most an account may send at once, in the same
	// units; at least MaxMessageCost, so that every message fits (a
	// smaller value is raised to it). Default DefaultSendBurst.
	SendBurst int
	// ReadRate bounds the reads one account makes through this process,
	// over all its devices and both transports: each Sync, Conversations,
	// Group, GroupsPage and Readers takes one from a budget that fills at
	// ReadRate a second up to ReadBurst. A read past it is refused
	// (LimitError, rate_limited) before anything is done. It keeps an
	// account from multiplying the per-connection rate limit of its reads
	// by opening connections. Default DefaultReadRate; negative turns it
	// off. Service calls (Actor.Trusted) are not counted.
	ReadRate float64
	// ReadBurst is the most reads an account may make at once, at least 1.
	// Default DefaultReadBurst.
	ReadBurst int
	// MaxSenders bounds the accounts whose budgets are tracked (about 150
	// bytes each; a full budget is forgotten). Default 65536.
	MaxSenders int
	// Logger receives what the client is not told. Default slog.Default().
	Logger *slog.Logger
	// Keys seals the bodies of sends and edits under their sender's data
	// key before they go on the log (events.Seal), and destroys an
	// account's keys when it is erased. Nil puts bodies on the log in
	// plaintext and cannot erase.
	Keys Keys
}

// Keys are the data keys of crypto-shredding (infra/keys.Ring).
type Keys interface {
	events.Keys
	// Destroy destroys every key of account and returns their ids.
	Destroy(ctx context.Context, account string) ([]string, error)
}

// The defaults of an account's send budget (Config.SendRate): 256 KiB a
// second, bursts of 1 MiB, a message costing 1 KiB beside its body — about
// 250 small messages a second, or 15 of the largest plain ones.
const (
	DefaultSendRate  = 256 << 10
	DefaultSendBurst = 1 << 20
	SendCost         = 1 << 10
)

// The defaults of an account's read budget (Config.ReadRate): three
// connections' worth of the gateway's default request rate, and a burst
// that lets a few devices sync a thousand conversations between them at
// once (a client closed 4005 syncs every conversation).
const (
	DefaultReadRate  = 300
	DefaultReadBurst = 1000
)

// DefaultReservationTTL is how long a client message id's reservation
// lives at most (docs/protocol.md, Idempotent retry).
const DefaultReservationTTL = 24 * time.Hour

// Observer is told the outcome of sends and syncs.
type Observer interface {
	// SendDone: result is "accepted", "duplicate" or the refusing code.
	SendDone(result string, d time.Duration)
	// SyncDone: source is "cache", "store" or the refusing code.
	SyncDone(source string)
}

type noObserver struct{}

func (noObserver) SendDone(string, time.Duration) {}
func (noObserver) SyncDone(string)                {}

func (c *Config) setDefaults() {
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 5 * time.Second
	}
	if c.SendTimeout == 0 {
		c.SendTimeout = 5 * time.Second
	}
	if c.CacheWait == 0 {
		c.CacheWait = 200 * time.Millisecond
	}
	if c.CacheWindow == 0 {
		c.CacheWindow = cache.Retention
	}
	if c.EditWindow == 0 {
		c.EditWindow = domain.DefaultEditWindow
	}
	if c.DefaultLimit == 0 {
		c.DefaultLimit = 50
	}
	if c.MaxLimit == 0 {
		c.MaxLimit = 200
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Observer == nil {
		c.Observer = noObserver{}
	}
	if c.Reservations == nil {
		c.Reservations = idempotency.NewMemory(nil)
	}
	if c.ReservationTTL == 0 {
		c.ReservationTTL = DefaultReservationTTL
	}
	if c.SendRate == 0 {
		c.SendRate = DefaultSendRate
	}
	if c.SendBurst == 0 {
		c.SendBurst = DefaultSendBurst
	}
	if c.ReadRate == 0 {
		c.ReadRate = DefaultReadRate
	}
	if c.ReadBurst == 0 {
		c.ReadBurst = DefaultReadBurst
	}
	if c.MaxSenders == 0 {
		c.MaxSenders = 65536
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Service implements the operations.
type Service struct {
	cfg    Config
	log    Log
	rm     ReadModels
	forget forgetting
	// completing counts the completions written after their acks.
	completing tracker
	// leases renews the reservations of the attempts under way.
	leases leases
	// budgets are the accounts' send budgets (Config.SendRate); nil when
	// they are off.
	budgets *ratelimit.Keyed
	// reads are the accounts' read budgets (Config.ReadRate); nil when
	// they are off.
	reads *ratelimit.Keyed
	// readRefusal is what a read past its account's budget is told.
	readRefusal string
	// listing lets one conversation list of each account run at a time:
	// a list is charged once it knows its length, so lists run side by
	// side would each pass the budget before any was charged.
	listing oneAtATime
	// typing remembers when each account last typed in each conversation
	// (TypingInterval).
	typing typingThrottle

	undecidedMu sync.Mutex
	// undecided holds the reservations waiting for the log to tell
	// whether their records landed (settleLater).
	undecided  map[heldLease]struct{}
	undecidedN atomic.Int32 // len(undecided), read without the lock
	stopped    bool         // Run ended: the undecided ones lapse
	// maxUndecided is the bound of undecided (a constant; tests lower it).
	maxUndecided int
}

// New returns a service over log and the read models.
func New(cfg Config, log Log, rm ReadModels) *Service {
	cfg.setDefaults()
	if rm.Mutes == nil {
		rm.Mutes = notify.NewMemoryMutes()
	}
	s := &Service{cfg: cfg, log: log, rm: rm, undecided: map[heldLease]struct{}{}, maxUndecided: maxUndecided,
		budgets:     ratelimit.New(cfg.SendRate, max(cfg.SendBurst, MaxMessageCost), cfg.MaxSenders),
		reads:       ratelimit.New(cfg.ReadRate, max(cfg.ReadBurst, 1), cfg.MaxSenders),
		readRefusal: fmt.Sprintf("this account reads more than %g times a second (syncs, lists, readers)", cfg.ReadRate)}
	s.leases = leases{every: reservationLease / 3, log: cfg.Logger,
		extend: func(ctx context.Context, k idempotency.Key, token string) error {
			return cfg.Reservations.Extend(ctx, k, token, reservationLease)
		}}
	return s
}
