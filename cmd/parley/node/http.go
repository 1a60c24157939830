package node

import (
	"context"
	"errors"
	"net/http"
	"net/http/pprof"

	"github.com/parley-chat/parley/transport/cluster"
	"github.com/parley-chat/parley/transport/console"
	"github.com/parley-chat/parley/transport/httpapi"
)

// serveHTTP serves every endpoint of the process on its listener: the
// operations endpoints always; on a gateway the WebSocket, the HTTP API,
// the console and the cluster link.
func (n *Node) serveHTTP() error {
	n.registerMetrics()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", n.healthz)
	mux.HandleFunc("GET /readyz", n.readyz)
	mux.Handle("GET /metrics", n.metrics.Handler())
	if n.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if n.gw != nil {
		mux.Handle("/ws", n.gw)
		var rl httpapi.RateLimit
		if n.cfg.Gateway.MaxConnectionsPerIP < 0 {
			// Every client has one proxy's address: no limit per address.
			rl.PerIP, rl.InFlightPerIP = -1, -1
		}
		hc := httpapi.Config{Service: n.svc, Tokens: n.tokens, ServiceCredential: n.cfg.ServiceCredential,
			Online: n.online, Presence: n.stores.routes.Presence, Logger: n.log, RateLimit: rl,
			TrustedGateway: httpapi.TrustedGateway{Secret: n.cfg.Gateway.Trusted.Secret, Header: n.cfg.Gateway.Trusted.SecretHeader}}
		if n.canBackUp() {
			hc.Backup = n.backup
		}
		h, err := httpapi.New(hc)
		if err != nil {
			return err
		}
		mux.Handle("/api/", h)
		if n.cfg.Console {
			cc := console.Config{Stream: n.recent, Status: n.consoleStatus, AnyListener: n.cfg.DevTokensUnsafe,
				ServiceCredential: n.cfg.ServiceCredential, Logger: n.log}
			if n.cfg.DevTokens {
				cc.DevTokens = n.tokens
				n.log.Warn("development tokens are on: the console mints a token for any account to a request from this machine "+
					"(loopback Host, the console's own Origin); turn them off with --dev-tokens off outside development",
					"listen", n.ln.Addr().String(), "unsafe", n.cfg.DevTokensUnsafe)
			}
			ch, err := console.New(cc)
			if err != nil {
				return err
			}
			mux.Handle("/console/", ch)
			mux.Handle("GET /{$}", http.RedirectHandler("/console/", http.StatusFound))
		}
		if n.clu != nil {
			mux.Handle(cluster.Path, cluster.NewReceiver(n.cfg.ClusterSecret, n.gw, n.log))
		}
	}
	n.http = n.cfg.HTTP.server(mux)
	ln := n.ln
	if bound := n.maxWaitingConnsPerIP(); bound > 0 {
		waiting := newWaitingConns(bound)
		waiting.hook(n.http)
		ln = waiting.listener(ln)
	}
	n.goOwned(func() {
		if err := n.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	})
	return nil
}

// maxWaitingConnsPerIP bounds the connections of one address outside a
// request (waitingConns): the gateway's, none without one (links and ops
// endpoints only).
func (n *Node) maxWaitingConnsPerIP() int {
	if n.gw == nil {
		return 0
	}
	return n.gw.MaxWaitingConnsPerIP()
}

// consoleStatus is what the console's status panel shows.
func (n *Node) consoleStatus() console.Status {
	st := console.Status{Connections: n.gw.Connections(), Online: n.gw.OnlineUIDs()}
	ctx, cancel := context.WithTimeout(context.Background(), ReadyCheckTimeout)
	defer cancel()
	ends, err := n.events.EndOffsets(ctx)
	if err != nil {
		return st
	}
	for _, l := range n.runner.Lag(n.events.Topic(), ends) {
		st.Lag = append(st.Lag, console.LagEntry{Projection: l.Projection, Partition: l.Partition, Records: l.Records})
	}
	return st
}
