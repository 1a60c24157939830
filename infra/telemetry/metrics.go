// Package telemetry holds Parley's Prometheus metrics. Components report
// through small interfaces they declare themselves; this package
// implements them on one registry that /metrics serves.
package telemetry

import (
	"net/http"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the process's metrics.
type Metrics struct {
	reg *prometheus.Registry

	sends       *prometheus.CounterVec
	sendLatency prometheus.Histogram
	syncs       *prometheus.CounterVec
	pushLatency prometheus.Histogram
	// requestWait and writeWait are the connection's queues' share of a
	// client's latency: before a request is handled, after its reply or a
	// push is queued.
	requestWait prometheus.Histogram
	writeWait   prometheus.Histogram
	pushes      prometheus.Counter
	disconnects *prometheus.CounterVec
	skipped     *prometheus.CounterVec
	// retention: the history retention job's work.
	retentionRemoved *prometheus.CounterVec
	retentionRuns    *prometheus.CounterVec
	retentionLastRun prometheus.Gauge
	notified         *prometheus.CounterVec
	retried          *prometheus.CounterVec
	// backups: a single node's backups (GET /api/v1/backup).
	backups          *prometheus.CounterVec
	backupLastTaken  prometheus.Gauge
	backupLastBytes  prometheus.Gauge
	backupLastPaused prometheus.Gauge
}

// latencyBuckets span 0.5 ms to 5 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 14)

// waitBuckets span 50 µs to 3.3 s: a connection's queues usually hold a
// request or a frame for well under a millisecond.
var waitBuckets = prometheus.ExponentialBuckets(0.00005, 2, 17)

// schedLatencies adds the Go runtime's go_sched_latencies_seconds to the
// default Go metrics: how long goroutines waited, runnable, for a thread
// to run them — the share of a request's latency that is the process's
// own goroutines waiting for each other on a busy machine.
var schedLatencies = collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/sched/latencies:seconds$`)}

// New registers Parley's metrics and the Go runtime's on a new registry.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_sends_total", Help: "Send requests by result: accepted, duplicate, or the refusing error code.",
		}, []string{"result"}),
		sendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parley_send_accept_seconds", Help: "Time from a send request to its ack (the append to the log included).", Buckets: latencyBuckets,
		}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_syncs_total", Help: "Syncs by the read model that answered: cache or store; or the error code.",
		}, []string{"source"}),
		pushLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parley_push_seconds", Help: "Time from a message's acceptance to its push being queued on a device's connection.", Buckets: latencyBuckets,
		}),
		requestWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parley_request_wait_seconds", Help: "Time from a request being read off a connection to its connection's worker starting on it.", Buckets: waitBuckets,
		}),
		writeWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parley_write_wait_seconds", Help: "Time from a frame (a reply, an ack or a push) being queued on a connection to its write to the socket finishing.", Buckets: waitBuckets,
		}),
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_pushes_total", Help: "Pushes queued on device connections.",
		}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_disconnects_total", Help: "Connections closed by the server, by reason (slow_consumer counts pushes that could not be written).",
		}, []string{"reason"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_projection_skipped_total", Help: "Records a projection skipped, by reason: poison (cannot be decoded or applied) or unknown_event (a newer producer's event).",
		}, []string{"projection", "reason"}),
		retentionRemoved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_retention_removed_messages_total", Help: "Messages the history retention (--retention) removed, by read model: store or cache.",
		}, []string{"read_model"}),
		retentionRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_retention_runs_total", Help: "Runs of the history retention job, by result: ok or error.",
		}, []string{"result"}),
		retentionLastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_retention_last_success_timestamp_seconds", Help: "When the last run of the history retention job that succeeded ended (Unix seconds); 0 before the first.",
		}),
		notified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_notifications_total", Help: "Offline notifications by outcome: sent (the webhook took them), dropped (the webhook refused them with a 4xx), online or muted (recipients not notified).",
		}, []string{"outcome"}),
		backups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_backups_total", Help: "Backups of this node (GET /api/v1/backup), by result: ok (streamed whole to the client's connection) or error.",
		}, []string{"result"}),
		backupLastTaken: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_backup_last_success_timestamp_seconds", Help: "When the last backup streamed whole was taken (Unix seconds); 0 before the first.",
		}),
		backupLastBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_backup_last_bytes", Help: "The size of the files of the last backup streamed whole.",
		}),
		backupLastPaused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_backup_last_log_pause_seconds", Help: "How long the log stood still (no append, no read) while the last backup streamed whole was taken.",
		}),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_notify_webhook_retries_total", Help: "Notification webhook requests sent again, by reason: network, or the HTTP status (429, 5xx).",
		}, []string{"reason"}),
	}
	m.reg.MustRegister(m.sends, m.sendLatency, m.syncs, m.pushLatency, m.requestWait, m.writeWait, m.pushes, m.disconnects, m.skipped, m.notified, m.retried,
		m.retentionRemoved, m.retentionRuns, m.retentionLastRun, m.backups, m.backupLastTaken, m.backupLastBytes, m.backupLastPaused,
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(schedLatencies)), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Counters that alerts watch show 0 from the start, not nothing.
	for _, result := range []string{"ok", "error"} {
		m.backups.WithLabelValues(result)
		m.retentionRuns.WithLabelValues(result)
	}
	return m
}

// Register adds collectors (gauges read at scrape time, say).
func (m *Metrics) Register(cs ...prometheus.Collector) { m.reg.MustRegister(cs...) }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// SendDone implements api.Observer.
func (m *Metrics) SendDone(result string, d time.Duration) {
	m.sends.WithLabelValues(result).Inc()
	if result == "accepted" || result == "duplicate" {
		m.sendLatency.Observe(d.Seconds())
	}
}

// SyncDone implements api.Observer.
func (m *Metrics) SyncDone(source string) { m.syncs.WithLabelValues(source).Inc() }

// Pushed implements ws.Observer: a push queued on n connections, accepted
// at accepted.
func (m *Metrics) Pushed(n int, accepted time.Time) {
	if n == 0 {
		return
	}
	m.pushes.Add(float64(n))
	m.pushLatency.Observe(time.Since(accepted).Seconds())
}

// RequestStarted implements ws.Observer.
func (m *Metrics) RequestStarted(d time.Duration) { m.requestWait.Observe(d.Seconds()) }

// FrameWritten implements ws.Observer.
func (m *Metrics) FrameWritten(d time.Duration) { m.writeWait.Observe(d.Seconds()) }

// Closed implements ws.Observer.
func (m *Metrics) Closed(reason string) { m.disconnects.WithLabelValues(reason).Inc() }

// Skipped implements runner.Observer.
func (m *Metrics) Skipped(projection, reason string) {
	m.skipped.WithLabelValues(projection, reason).Inc()
}

// RetentionRun implements retention.Observer.
func (m *Metrics) RetentionRun(end time.Time, fromStore, fromCache int, err error) {
	m.retentionRemoved.WithLabelValues("store").Add(float64(fromStore))
	m.retentionRemoved.WithLabelValues("cache").Add(float64(fromCache))
	if err != nil {
		m.retentionRuns.WithLabelValues("error").Inc()
		return
	}
	m.retentionRuns.WithLabelValues("ok").Inc()
	m.retentionLastRun.Set(float64(end.UnixNano()) / 1e9)
}

// BackupDone counts a backup taken at taken, of bytes, for which the log
// stood still for paused; err is why it failed.
func (m *Metrics) BackupDone(taken time.Time, bytes int64, paused time.Duration, err error) {
	if err != nil {
		m.backups.WithLabelValues("error").Inc()
		return
	}
	m.backups.WithLabelValues("ok").Inc()
	m.backupLastTaken.Set(float64(taken.UnixNano()) / 1e9)
	m.backupLastBytes.Set(float64(bytes))
	m.backupLastPaused.Set(paused.Seconds())
}

// Notified implements notify.Observer.
func (m *Metrics) Notified(outcome string, n int) {
	if n > 0 {
		m.notified.WithLabelValues(outcome).Add(float64(n))
	}
}

// Retried implements notify.WebhookObserver.
func (m *Metrics) Retried(reason string) { m.retried.WithLabelValues(reason).Inc() }
