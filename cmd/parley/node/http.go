package node

import (
	"errors"
	"net/http"
	"net/http/pprof"
	"time"

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
		h, err := httpapi.New(httpapi.Config{Service: n.svc, Tokens: n.tokens, ServiceCredential: n.cfg.ServiceCredential,
			Online: n.online, Logger: n.log})
		if err != nil {
			return err
		}
		mux.Handle("/api/", h)
		if n.cfg.Console {
			cc := console.Config{Stream: n.recent, Status: n.consoleStatus}
			if n.cfg.DevTokens {
				cc.DevTokens = n.tokens
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
	n.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	n.goOwned(func() {
		if err := n.http.Serve(n.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	})
	return nil
}

// consoleStatus is what the console's status panel shows.
func (n *Node) consoleStatus() console.Status {
	st := console.Status{Connections: n.gw.Connections(), Online: n.gw.OnlineUIDs()}
	ends, err := n.events.EndOffsets()
	if err != nil {
		return st
	}
	for _, l := range n.runner.Lag(n.events.Topic(), ends) {
		st.Lag = append(st.Lag, console.LagEntry{Projection: l.Projection, Partition: l.Partition, Records: l.Records})
	}
	return st
}
