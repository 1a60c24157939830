// Package routes is the routing state of the design notes (R9): the global
// route uniqueId → instance, the online set account → uniqueIds, and the
// liveness of instances. Gateways claim routes at hello and release them at
// close; the push projection reads them to find each device's instance. The
// in-memory adapter serves one process; the Redis adapter a cluster.
//
// Presence is derived from the same routes, in the same atomic steps: an
// account turns online when a claim gives it its first routed device, and
// offline when a release (or the reaping of a dead instance) takes its last
// one, so that every instance sees one order of changes.
package routes

import (
	"context"
	"time"

	"github.com/parley-chat/parley/domain"
)

// TTLs from the design notes.
const (
	// RouteTTL is how long a route lives without a refresh (renew refreshes it).
	RouteTTL = 1800 * time.Second
	// OnlineTTL is how long an account's online set lives without a change.
	OnlineTTL = 3600 * time.Second
	// AliveTTL is how long an instance counts as alive after its last beat;
	// instances beat every AliveTTL/3.
	AliveTTL = 15 * time.Second
)

// ErrHeld: a live instance other than the claimant holds the route. It is
// domain.ErrConnectedElsewhere, so that the gateway that asked needs to
// know no adapter.
var ErrHeld = domain.ErrConnectedElsewhere

// Table is the routing state port. Every adapter passes routestest.
type Table interface {
	// Claim makes instance the route of uid and adds uid to its account's
	// online set, unless another instance that is alive holds it; then it
	// returns that owner and ErrHeld. force takes the route regardless (the
	// replace policy) and returns the previous owner.
	Claim(ctx context.Context, uid domain.UniqueID, instance string, force bool) (previous string, err error)
	// Release removes uid's route if instance still owns it, and uid from
	// its account's online set.
	Release(ctx context.Context, uid domain.UniqueID, instance string) error
	// Refresh extends uid's route and its account's online set.
	Refresh(ctx context.Context, uid domain.UniqueID, instance string) error
	// Online lists the uniqueIds in account's online set. On a miss it
	// reloads the set from the directory.
	Online(ctx context.Context, account domain.AccountID) ([]domain.UniqueID, error)
	// Lookup returns the instance of each uid that has a route.
	Lookup(ctx context.Context, uids []domain.UniqueID) (map[domain.UniqueID]string, error)
	// Beat marks instance alive for AliveTTL.
	Beat(ctx context.Context, instance string) error
	// Alive reports whether instance beat within AliveTTL.
	Alive(ctx context.Context, instance string) (bool, error)
	// Forget marks instance dead at once, when it shuts down cleanly, and
	// now as the last time it was known alive: the routes it then fails
	// to release (or that a reap takes while it closes its connections)
	// are released as of its shutdown, not of its last beat.
	Forget(ctx context.Context, instance string) error

	// Presence returns the presence of each account, in order. An account
	// never seen is offline with a zero LastSeen.
	Presence(ctx context.Context, accounts []domain.AccountID) ([]domain.Presence, error)
	// WatchPresence calls f with every change of any account's presence,
	// made by any instance sharing the table, in the order they were made,
	// until ctx ends. It returns once the watch is in place (a change made
	// after it returns reaches f) with wait, which blocks until the watch
	// has ended after ctx. f must not block. When the watch may have
	// missed changes (its connection to the table broke and was made
	// again), it calls resync, on a goroutine of its own, so that the
	// watcher reads again what it cares about.
	WatchPresence(ctx context.Context, f func(domain.Presence), resync func()) (wait func(), err error)
	// Reap releases the routes of every instance whose liveness lapsed
	// after it beat at least once (it crashed, or lost the table), as of
	// its last beat: an account that had no other device turns offline
	// with LastSeen at that beat. It returns how many routes it released.
	// Every gateway calls it every beat; concurrent calls are safe.
	Reap(ctx context.Context) (int, error)
	// Forsake releases every route instance still holds, as of its last
	// beat, alive or not: a gateway calls it for itself at start, before
	// it serves, for the routes a previous run at the same address left
	// behind.
	Forsake(ctx context.Context, instance string) (int, error)
}

// Directory is the user service's view of an account's devices, used to
// reload an online set that expired (the design notes: "on a cache miss,
// reload from the user service").
type Directory interface {
	Devices(ctx context.Context, account domain.AccountID) ([]domain.UniqueID, error)
}

// NoDirectory is the built-in directory: it knows no devices, so a missed
// online set stays empty until devices say hello again. A set only misses
// after OnlineTTL without any hello, renew or close of the account, and
// renewals come every lease (10 minutes by default), so with live devices it
// does not miss.
type NoDirectory struct{}

// Devices implements Directory.
func (NoDirectory) Devices(context.Context, domain.AccountID) ([]domain.UniqueID, error) {
	return nil, nil
}
