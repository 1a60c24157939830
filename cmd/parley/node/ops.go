package node

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/parley-chat/parley/infra/kafka"
	parleypebble "github.com/parley-chat/parley/infra/pebble"
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
	ctx, cancel := context.WithTimeout(context.Background(), ReadyCheckTimeout)
	defer cancel()
	ends, err := c.n.events.EndOffsets(ctx) // a scrape must not hang on a lost broker
	if err != nil {
		return
	}
	for _, l := range c.n.runner.Lag(c.n.events.Topic(), ends) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(l.Records), l.Projection, strconv.Itoa(int(l.Partition)))
	}
}

// registerMetrics adds the node's own gauges to its registry.
func (n *Node) registerMetrics() {
	n.ready = newReadiness(n.log)
	n.metrics.Register(n.ready.gauge)
	n.metrics.Register(lagCollector{n: n, desc: prometheus.NewDesc("parley_projection_lag_records",
		"Records of the log a projection has not applied yet, per partition.", []string{"projection", "partition"}, nil)})
	if n.gw != nil {
		n.metrics.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parley_connections", Help: "Open WebSocket connections on this instance.",
		}, func() float64 { return float64(n.gw.Connections()) }))
		n.metrics.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parley_outgoing_queued_bytes",
			Help: "Bytes of frames queued on this instance's connections, not yet written, as their budget counts them: each frame's header, its payload once for a push (split among the connections it was queued on), whole for a reply.",
		}, func() float64 { return float64(n.gw.QueuedBytes()) }))
		n.metrics.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parley_outgoing_queued_bytes_limit",
			Help: "The most the connections' outgoing queues may hold together; past it, the connections furthest behind are closed as slow consumers.",
		}, func() float64 { return float64(n.gw.QueuedBytesLimit()) }))
		n.metrics.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parley_incoming_partial_bytes",
			Help: "Bytes the messages that connections are part way through sending hold on this instance, as their frames' headers announced them; a connection whose message does not fit in half the outgoing queue budget (at least 8 MiB; half of that for one source address) is closed 1013 busy.",
		}, func() float64 { return float64(n.gw.ReceivingBytes()) }))
		n.metrics.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parley_incoming_partial_bytes_limit",
			Help: "The most the messages that connections are part way through sending may hold together; past it, the connection whose message does not fit is closed 1013 busy.",
		}, func() float64 { return float64(n.gw.ReceivingBytesLimit()) }))
	}
	if n.disk != nil {
		n.metrics.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parley_disk_free_bytes",
			Help: "The least free space under the single node's embedded log and store, at the last look (every second); below --min-free-disk, appends are refused.",
		}, func() float64 { return float64(n.disk.Free()) }))
	}
	if n.svc != nil {
		n.metrics.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parley_sends_undecided",
			Help: "Sends answered unavailable whose records the event log may still append: their reservations wait for the log's answer.",
		}, func() float64 { return float64(n.svc.Undecided()) }))
	}
	if n.broker != nil {
		n.metrics.Register(brokerCollector{n.broker,
			prometheus.NewDesc("parley_broker_index_bytes", "Bytes of the embedded broker's index of record batches in memory.", nil, nil),
			prometheus.NewDesc("parley_broker_index_read_back_total", "Chunks of the embedded broker's index (512 entries) read back from the log's segments.", nil, nil)})
	}
	if n.stores.embedded != nil {
		n.metrics.Register(newStoreCollector(n.stores.embedded, n.stores.stalls))
		n.metrics.Register(filterCollector{
			filters: n.stores.filters,
			loaded: prometheus.NewDesc("parley_store_filter_loaded",
				"1 when an in-memory filter of a kind of key the embedded store holds answers lookups of missing keys; 0 while it loads (at start, and again after it outgrew its bound) and when it stays off.",
				[]string{"projection", "kind"}, nil),
			bytes: prometheus.NewDesc("parley_store_filter_bytes",
				"Memory of an in-memory filter of a kind of key the embedded store holds.", []string{"projection", "kind"}, nil),
		})
	}
}

// brokerCollector reports the embedded broker's index, from one look at
// it per scrape.
type brokerCollector struct {
	b                *kafka.Embedded
	bytes, readBacks *prometheus.Desc
}

func (c brokerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.bytes; ch <- c.readBacks }

func (c brokerCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.b.IndexStats()
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(s.InMemory+s.Filling))
	ch <- prometheus.MustNewConstMetric(c.readBacks, prometheus.CounterValue, float64(s.ReadBack))
}

// filterCollector reports the embedded store's filters of held keys.
type filterCollector struct {
	filters       map[string]func(report func(kind string, loaded bool, bytes int64))
	loaded, bytes *prometheus.Desc
}

func (c filterCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.loaded; ch <- c.bytes }

func (c filterCollector) Collect(ch chan<- prometheus.Metric) {
	for projection, filters := range c.filters {
		filters(func(kind string, loaded bool, bytes int64) {
			v := 0.0
			if loaded {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.loaded, prometheus.GaugeValue, v, projection, kind)
			ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(bytes), projection, kind)
		})
	}
}

// storeCollector reports the single node's embedded store: whether its
// compactions keep up with the writes (debt, level 0, stalls) and what a
// lookup costs (read amplification, the block cache), from one look at
// Pebble's metrics per scrape.
type storeCollector struct {
	db      *pebble.DB
	stalls  *parleypebble.Stalls
	metrics []storeMetric
}

// storeMetric is one series of storeCollector and where its value comes
// from.
type storeMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(*pebble.Metrics, *parleypebble.Stalls) float64
}

func newStoreCollector(db *pebble.DB, stalls *parleypebble.Stalls) storeCollector {
	type (
		pm = pebble.Metrics
		ps = parleypebble.Stalls
	)
	metric := func(name, help string, kind prometheus.ValueType, value func(*pm, *ps) float64) storeMetric {
		return storeMetric{prometheus.NewDesc(name, help, nil, nil), kind, value}
	}
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	return storeCollector{db: db, stalls: stalls, metrics: []storeMetric{
		metric("parley_store_size_bytes", "Bytes the embedded store takes on disk: tables, write-ahead log and manifest.",
			gauge, func(m *pm, _ *ps) float64 { return float64(m.DiskSpaceUsage()) }),
		metric("parley_store_compaction_debt_bytes", "Bytes the embedded store estimates it must compact before its levels are in shape.",
			gauge, func(m *pm, _ *ps) float64 { return float64(m.Compact.EstimatedDebt) }),
		metric("parley_store_compaction_seconds_total", "Time the embedded store's compactions have taken since start.",
			counter, func(m *pm, _ *ps) float64 { return m.Compact.Duration.Seconds() }),
		metric("parley_store_l0_sublevels", "Sublevels of the embedded store's level 0; writes stall at 12.",
			gauge, func(m *pm, _ *ps) float64 { return float64(m.Levels[0].Sublevels) }),
		metric("parley_store_read_amplification", "Sorted runs of tables (level 0's sublevels and the other levels) a lookup in the embedded store may check, besides its memtables.",
			gauge, func(m *pm, _ *ps) float64 { return float64(m.ReadAmp()) }),
		metric("parley_store_write_stalls_total", "Times the embedded store held writes back for its flushes or compactions.",
			counter, func(_ *pm, s *ps) float64 { return float64(s.Count()) }),
		metric("parley_store_write_stall_seconds_total", "Time the embedded store held writes back.",
			counter, func(_ *pm, s *ps) float64 { return s.Duration().Seconds() }),
		metric("parley_store_block_cache_bytes", "Bytes of the embedded store's tables held in its block cache (--store-cache-bytes).",
			gauge, func(m *pm, _ *ps) float64 { return float64(m.BlockCache.Size) }),
		metric("parley_store_block_cache_hits_total", "Reads of the embedded store's tables answered from its block cache.",
			counter, func(m *pm, _ *ps) float64 { return float64(m.BlockCache.Hits) }),
		metric("parley_store_block_cache_misses_total", "Reads of the embedded store's tables that missed its block cache and read the file.",
			counter, func(m *pm, _ *ps) float64 { return float64(m.BlockCache.Misses) }),
	}}
}

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, sm := range c.metrics {
		ch <- sm.desc
	}
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.db.Metrics()
	for _, sm := range c.metrics {
		ch <- prometheus.MustNewConstMetric(sm.desc, sm.kind, sm.value(m, c.stalls))
	}
}

// healthz answers 200 while the process runs.
func (n *Node) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// ReadyCheckTimeout bounds each readiness check. The checks run side by
// side, each with its own deadline, so /readyz answers within about this
// long whatever is down, and a slow store fails only the store's check.
const ReadyCheckTimeout = time.Second

// readiness remembers the last result of each check, so that a change is
// logged once (not at every probe) and exported as a gauge.
type readiness struct {
	log   *slog.Logger
	gauge *prometheus.GaugeVec

	mu   sync.Mutex
	last map[string]bool // check → passed
}

func newReadiness(log *slog.Logger) *readiness {
	return &readiness{log: log, last: map[string]bool{},
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "parley_ready_check",
			Help: "Result of each readiness check at the last /readyz: 1 passes, 0 fails.",
		}, []string{"check"})}
}

// note records a check's result; err is nil when it passed.
func (r *readiness) note(check string, err error) {
	ok := err == nil
	r.mu.Lock()
	prev, seen := r.last[check]
	r.last[check] = ok
	r.mu.Unlock()
	v := 0.0
	if ok {
		v = 1
	}
	r.gauge.WithLabelValues(check).Set(v)
	switch {
	case !ok && (!seen || prev):
		r.log.Warn("readiness check fails", "check", check, "err", err)
	case ok && seen && !prev:
		r.log.Info("readiness check passes again", "check", check)
	}
}

// readyz answers 200 when the log takes appends, the bus, the store and
// the cache answer, and the in-memory read models are within MaxReadyLag
// of the log; 503 otherwise, with every check's result. Each check has
// ReadyCheckTimeout of its own.
func (n *Node) readyz(w http.ResponseWriter, r *http.Request) {
	var ends map[int32]int64
	checks := map[string]func(ctx context.Context) error{
		"log": func(context.Context) error { return n.events.Writable() },
		"bus": func(ctx context.Context) (err error) {
			ends, err = n.events.EndOffsets(ctx)
			return err
		},
	}
	if n.stores.pool != nil {
		checks["store"] = func(ctx context.Context) error { return n.stores.pool.Ping(ctx) }
	}
	if n.stores.rdb != nil {
		checks["cache"] = func(ctx context.Context) error { return n.stores.rdb.Ping(ctx).Err() }
	}
	if n.disk != nil {
		checks["disk"] = func(context.Context) error { return n.disk.Err() }
	}
	results := make(map[string]error, len(checks))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, check := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(r.Context(), ReadyCheckTimeout)
			defer cancel()
			err := check(ctx)
			if err == nil && ctx.Err() != nil {
				err = ctx.Err()
			}
			mu.Lock()
			results[name] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	if results["bus"] == nil {
		behind := map[string]int64{}
		for _, l := range n.runner.Lag(n.events.Topic(), ends) {
			if l.Rebuild {
				behind[l.Projection] += l.Records
			}
		}
		for name, lag := range behind {
			results[name] = nil
			if lag > MaxReadyLag {
				results[name] = errors.New("behind by " + strconv.FormatInt(lag, 10) + " records")
			}
		}
	}
	out := make(map[string]string, len(results))
	ready := true
	for name, err := range results {
		n.ready.note(name, err)
		out[name] = "ok"
		if err != nil {
			ready = false
			out[name] = err.Error()
		}
	}
	status := http.StatusOK
	body := map[string]any{"status": "ready", "checks": out}
	if !ready {
		status = http.StatusServiceUnavailable
		body["status"] = "not ready"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
