package node

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/routes"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/cluster"
)

// clusterParts are what a scale-out process adds: links to the other
// gateways, the push router, and (for a gateway) its liveness.
type clusterParts struct {
	links  *cluster.Links
	router *cluster.Router
	cancel context.CancelFunc
	done   chan struct{}
}

// startCluster opens the links between instances and, on a gateway, keeps
// its liveness and routes in the route table.
func (n *Node) startCluster() (*clusterParts, error) {
	c := &clusterParts{links: cluster.NewLinks(n.cfg.ClusterSecret, 0, n.log), done: make(chan struct{})}
	n.closers = append(n.closers, func() error { c.links.Close(); return nil })
	var local cluster.Local
	if n.gw != nil {
		local = n.gw
	}
	c.router = cluster.NewRouter(n.stores.routes, n.cfg.Instance, local, c.links, n.log)
	if n.gw == nil {
		close(c.done)
		return c, nil
	}
	n.gw.SetCluster(c.router)
	n.gw.SetFanout(c.router)
	// Routes a previous run at this address left behind (it crashed) are
	// not this run's: release them before serving, so that their accounts
	// turn offline as of that run's last beat.
	fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
	released, err := n.stores.routes.Forsake(fctx, n.cfg.Instance)
	fcancel()
	if err != nil {
		return nil, err
	}
	if released > 0 {
		n.log.Info("released the routes a previous run left behind", "routes", released)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	beat := routes.AliveTTL / 3
	reaped := make(chan struct{})
	go func() {
		defer close(reaped)
		cluster.ReapDead(ctx, n.stores.routes, beat, n.log)
	}()
	go func() {
		defer close(c.done)
		defer func() { <-reaped }()
		cluster.KeepAlive(ctx, n.stores.routes, n.cfg.Instance, n.gw, beat, n.cfg.RouteReassert, n.aborted.Load, n.log)
	}()
	return c, nil
}

// stop ends the liveness, which then forgets the instance unless the node
// crashed.
func (c *clusterParts) stop() {
	if c.cancel != nil {
		c.cancel()
	}
	<-c.done
}

// online lists the connected devices of account: in a cluster, those of
// its online set that still have a route; on one node, this gateway's.
func (n *Node) online(ctx context.Context, account domain.AccountID) ([]domain.DeviceID, error) {
	if n.clu == nil {
		return n.gw.Online(account), nil
	}
	uids, err := n.stores.routes.Online(ctx, account)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrUnavailable, err)
	}
	routed, err := n.stores.routes.Lookup(ctx, uids)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrUnavailable, err)
	}
	out := make([]domain.DeviceID, 0, len(routed))
	for uid := range routed {
		_, d := uid.Split()
		out = append(out, d)
	}
	return out, nil
}
