package cluster

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/push"
	"github.com/parley-chat/parley/transport/ws"
)

// Routes is the global route table as the router reads it (R9).
type Routes interface {
	// Online lists the devices in account's online set.
	Online(ctx context.Context, account domain.AccountID) ([]domain.UniqueID, error)
	// Lookup returns the instance of each uid that has a route.
	Lookup(ctx context.Context, uids []domain.UniqueID) (map[domain.UniqueID]string, error)
}

// Router is the push.Deliverer of a cluster: it resolves every recipient
// device's instance in the route table and delivers locally or forwards.
type Router struct {
	routes Routes
	self   string
	local  Local // nil when this process runs no gateway
	links  *Links
	log    *slog.Logger
}

// NewRouter returns a router for the instance self.
func NewRouter(table Routes, self string, local Local, links *Links, log *slog.Logger) *Router {
	return &Router{routes: table, self: self, local: local, links: links, log: log}
}

// Deliver implements push.Deliverer. A route-table error fails the push so
// that the projection retries the record: a push is never skipped silently.
func (r *Router) Deliver(p push.Push) error { return r.deliver(p, nil) }

// Resolve implements push.Resolver: the online sets of accounts and the
// routes of their devices, read in two round trips for a whole batch.
func (r *Router) Resolve(ctx context.Context, accounts []domain.AccountID) (push.Deliverer, error) {
	sets, err := r.online(ctx, accounts)
	if err != nil {
		return nil, err
	}
	res := &resolved{r: r, online: make(map[domain.AccountID][]domain.UniqueID, len(accounts))}
	var uids []domain.UniqueID
	for i, a := range accounts {
		res.online[a] = sets[i]
		uids = append(uids, sets[i]...)
	}
	if res.owners, err = r.routes.Lookup(ctx, uids); err != nil {
		return nil, err
	}
	return res, nil
}

// resolved delivers with the online sets and routes Resolve read; the
// accounts it did not read it reads as Deliver does.
type resolved struct {
	r      *Router
	online map[domain.AccountID][]domain.UniqueID
	owners map[domain.UniqueID]string // the routes of every device in online
}

// Deliver implements push.Deliverer.
func (res *resolved) Deliver(p push.Push) error { return res.r.deliver(p, res) }

// deliver pushes p to the devices of its recipients, with what res read
// when it is not nil.
func (r *Router) deliver(p push.Push, res *resolved) error {
	frame := ws.PushFrame(p)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	origin := p.Origin()
	skip, skipping := domain.NewUniqueID(origin.Account, origin.Device), p.SkipsOrigin()
	sets := make([][]domain.UniqueID, len(p.Recipients))
	fresh := make([]bool, len(p.Recipients)) // read here, not by Resolve
	var ask []domain.AccountID
	var at []int
	for i, a := range p.Recipients {
		if res != nil {
			if set, ok := res.online[a]; ok {
				sets[i] = set
				continue
			}
		}
		ask = append(ask, a)
		at = append(at, i)
		fresh[i] = true
	}
	if len(ask) > 0 {
		read, err := r.online(ctx, ask)
		if err != nil {
			return err
		}
		for j, i := range at {
			sets[i] = read[j]
		}
	}
	owners := map[domain.UniqueID]string{}
	var unresolved []domain.UniqueID
	for i, online := range sets {
		for _, u := range online {
			// A message goes to its sending device too; a change, a
			// receipt or a typing signal skips its own device.
			if skipping && u == skip {
				continue
			}
			if fresh[i] {
				unresolved = append(unresolved, u)
			} else if inst, ok := res.owners[u]; ok {
				owners[u] = inst
			}
		}
	}
	if len(unresolved) > 0 {
		read, err := r.routes.Lookup(ctx, unresolved)
		if err != nil {
			return err
		}
		maps.Copy(owners, read)
	}
	if len(owners) == 0 {
		return nil
	}
	byOwner := map[string][]domain.UniqueID{}
	for u, inst := range owners {
		byOwner[inst] = append(byOwner[inst], u)
	}
	for inst, us := range byOwner {
		if inst == r.self && r.local != nil {
			r.local.DeliverUIDs(us, frame, p.At())
			continue
		}
		if err := r.links.Send(inst, Forward{UIDs: us, Frame: frame, At: p.At().UnixMilli()}); err != nil {
			// The peer does not keep up: its devices are closed as slow
			// consumers as soon as the link can carry it, and resync (I5).
			r.log.Warn("push not forwarded; its devices will be closed", "peer", inst, "devices", len(us), "err", err)
			r.links.Drop(inst, us)
		}
	}
	return nil
}

// onlineLookups is how many recipients' online sets one push, or one
// batch of pushes (Resolve), reads at once: the reads go out together in
// shared pipelines, so a batch of n accounts waits for about
// n/onlineLookups round trips. At 8, a scale-out node at 5,000 sends/s
// resolved its growing batches in waves of 8 and its pushes fell seconds
// behind (p50 2.1–3.4 s); at 64, p50 0.4–0.6 s, the acks' p50 rising from
// ~80 to 140–180 ms as the pushes took their share (docs/benchmarks.md).
const onlineLookups = 64

// online reads the online set of every account, at most onlineLookups at
// once: one after the other, a 1:1 message waited for two round trips
// before it could look the devices' routes up, and a group message for
// one per member — on a loaded machine each round trip to Redis costs
// milliseconds, and pushes fell seconds behind.
func (r *Router) online(ctx context.Context, accounts []domain.AccountID) ([][]domain.UniqueID, error) {
	sets := make([][]domain.UniqueID, len(accounts))
	if len(accounts) == 1 {
		var err error
		sets[0], err = r.routes.Online(ctx, accounts[0])
		return sets, err
	}
	errs := make([]error, len(accounts))
	var wg sync.WaitGroup
	turn := make(chan struct{}, onlineLookups)
	for i, a := range accounts {
		turn <- struct{}{}
		wg.Go(func() {
			defer func() { <-turn }()
			sets[i], errs[i] = r.routes.Online(ctx, a)
		})
	}
	wg.Wait()
	return sets, errors.Join(errs...)
}

// Kick asks instance to close uid, whose route this instance took over.
func (r *Router) Kick(instance string, uid domain.UniqueID) {
	if instance == r.self && r.local != nil {
		r.local.Kick(uid, "replaced")
		return
	}
	if err := r.links.Send(instance, Forward{Kick: uid, KickReason: "replaced"}); err != nil {
		r.log.Warn("kick not forwarded", "peer", instance, "uid", uid, "err", err)
	}
}
