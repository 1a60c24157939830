package node

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MaxReadyLag is the most records an in-memory read model may be behind
// the log while /readyz still answers ready.
const MaxReadyLag = 10000

// lagCollector reports, at each scrape, how many records each projection
// is behind the log, per partition.
type lagCollector struct {
	n    *Node
	desc *prometheus.Desc
}

func (c lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c lagCollector) Collect(ch chan<- prometheus.Metric) {
	ends, err := c.n.events.EndOffsets()
	if err != nil {
		return
	}
	for _, l := range c.n.runner.Lag(c.n.events.Topic(), ends) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(l.Records), l.Projection, strconv.Itoa(int(l.Partition)))
	}
}

// registerMetrics adds the node's own gauges to its registry.
func (n *Node) registerMetrics() {
	n.metrics.Register(lagCollector{n: n, desc: prometheus.NewDesc("parley_projection_lag_records",
		"Records of the log a projection has not applied yet, per partition.", []string{"projection", "partition"}, nil)})
	if n.gw != nil {
		n.metrics.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parley_connections", Help: "Open WebSocket connections on this instance.",
		}, func() float64 { return float64(n.gw.Connections()) }))
	}
}

// healthz answers 200 while the process runs.
func (n *Node) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// readyz answers 200 when the bus, the store and the cache answer and the
// in-memory read models are within MaxReadyLag of the log; 503 otherwise,
// with every check's result.
func (n *Node) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{}
	ready := true
	fail := func(name string, err error) {
		ready = false
		checks[name] = err.Error()
	}
	if err := n.events.Writable(); err != nil {
		fail("log", err)
	} else {
		checks["log"] = "ok"
	}
	ends, err := n.events.EndOffsets()
	if err != nil {
		fail("bus", err)
	} else {
		checks["bus"] = "ok"
		behind := map[string]int64{}
		for _, l := range n.runner.Lag(n.events.Topic(), ends) {
			if l.Rebuild {
				behind[l.Projection] += l.Records
			}
		}
		for name, lag := range behind {
			if lag > MaxReadyLag {
				ready = false
				checks[name] = "behind by " + strconv.FormatInt(lag, 10) + " records"
			} else {
				checks[name] = "ok"
			}
		}
	}
	if n.stores.pool != nil {
		if err := n.stores.pool.Ping(ctx); err != nil {
			fail("store", err)
		} else {
			checks["store"] = "ok"
		}
	}
	if n.stores.rdb != nil {
		if err := n.stores.rdb.Ping(ctx).Err(); err != nil {
			fail("cache", err)
		} else {
			checks["cache"] = "ok"
		}
	}
	status := http.StatusOK
	body := map[string]any{"status": "ready", "checks": checks}
	if !ready {
		status = http.StatusServiceUnavailable
		body["status"] = "not ready"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
