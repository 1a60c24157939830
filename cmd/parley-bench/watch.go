package main

import (
	"context"
	"time"
)

// watcher is what runs beside the load through the measured window: the
// interval series, and in one process the reads of the server's metrics
// and the fetch of its profile.
type watcher struct {
	cfg     config
	started time.Time
	ended   time.Time

	iv          *intervals
	stopIv      chan struct{}
	ivDone      chan struct{}
	smp         *sampler           // nil: the server's metrics are not read here
	stopSampler func()             // stops the sampler after a last read
	profile     chan ProfileResult // nil: no profile asked for, or not here
}

// watch starts watching a window that starts at started. top is whether
// this process reads the server's metrics and profile.
func (l *load) watch(ctx context.Context, started time.Time, top bool) *watcher {
	cfg := l.cfg
	w := &watcher{cfg: cfg, started: started, iv: newIntervals(l, started),
		stopIv: make(chan struct{}), ivDone: make(chan struct{}), stopSampler: func() {}}
	if top && cfg.MetricsURL != "" {
		w.smp = &sampler{url: cfg.MetricsURL}
		w.smp.take(ctx)
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); w.smp.run(sctx) }()
		w.stopSampler = func() { cancel(); <-done; w.smp.take(ctx) }
	}
	if top && cfg.ServerProfile > 0 {
		w.profile = make(chan ProfileResult, 1)
		go func() { w.profile <- cfg.profile(ctx, started) }()
	}
	go func() {
		defer close(w.ivDone)
		if w.series() {
			w.iv.run(cfg.Interval, w.stopIv)
		}
	}()
	return w
}

// series is whether the window is cut into intervals: idle connections
// have no throughput to follow.
func (w *watcher) series() bool { return w.cfg.Interval > 0 && w.cfg.Scenario != "idle" }

// stop ends the window at ended: the last interval closes, and the
// server's metrics are read one last time.
func (w *watcher) stop(ended time.Time) {
	w.ended = ended
	close(w.stopIv)
	<-w.ivDone
	if w.series() {
		w.iv.finish(ended)
	}
	w.stopSampler()
}

// report puts the intervals, the server's numbers and the profile into
// rep, waiting for the profile if it is still being fetched.
func (w *watcher) report(rep *Report) error {
	if w.iv.err != nil {
		return w.iv.err
	}
	rep.Intervals = w.iv.rows
	switch {
	case w.smp != nil:
		rep.Server = w.smp.stats(w.started, time.Now())
		addServer(rep.Intervals, w.smp)
	case w.cfg.MetricsURL == "":
		rep.Server = noServerStats("not measured: --metrics-url is empty")
	}
	if w.profile != nil {
		p := <-w.profile
		rep.Profile = &p
	}
	return nil
}
