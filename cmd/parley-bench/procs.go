package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// runProcs runs --procs children of this binary, each with its share of
// connections and rate, and merges their reports: counts add up,
// histograms merge.
func runProcs(ctx context.Context, cfg config, args []string) (*Report, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	reports := make([]*Report, cfg.Procs)
	errs := make([]error, cfg.Procs)
	var mem Memory
	mem.BeforeBytes = serverRSS(cfg.MetricsURL)
	var wg sync.WaitGroup
	for i := 0; i < cfg.Procs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			childArgs := append(append([]string(nil), args...), "--child", fmt.Sprint(i+1), "--prefix", cfg.Prefix,
				"--progress="+fmt.Sprint(i == 0), "--token-secret", string(cfg.secret))
			cmd := exec.CommandContext(ctx, self, childArgs...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, os.Stderr
			if err := cmd.Run(); err != nil {
				errs[i] = fmt.Errorf("generator process %d: %w", i+1, err)
				return
			}
			var r Report
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				errs[i] = fmt.Errorf("generator process %d printed no report: %w", i+1, err)
				return
			}
			reports[i] = &r
		}()
	}
	if cfg.Scenario == "idle" {
		// Every child has connected well before the end of its hold.
		time.Sleep(cfg.Duration * 7 / 10)
		mem.AfterBytes = serverRSS(cfg.MetricsURL)
		if mem.BeforeBytes > 0 && mem.AfterBytes > 0 {
			mem.PerConnBytes = (mem.AfterBytes - mem.BeforeBytes) / float64(cfg.Conns)
		}
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	out, err := merge(cfg, reports)
	if err != nil {
		return nil, err
	}
	if cfg.Scenario == "idle" {
		out.Memory = mem
	}
	return out, nil
}

// merge adds up the children's reports. The server's CPU, memory and
// profile are the first child's, the one that read them.
func merge(cfg config, rs []*Report) (*Report, error) {
	out := &Report{Config: cfg, Started: rs[0].Started, Errors: map[string]int{}, Sources: map[string]int{}}
	ack, push, syn := newHist(), newHist(), newHist()
	for _, r := range rs {
		out.Elapsed = max(out.Elapsed, r.Elapsed)
		out.Sent += r.Sent
		out.Acked += r.Acked
		out.Unacked += r.Unacked
		out.Pushes += r.Pushes
		out.Syncs += r.Syncs
		out.Backlog += r.Backlog
		for k, v := range r.Errors {
			out.Errors[k] += v
		}
		for k, v := range r.Sources {
			out.Sources[k] += v
		}
		out.Verify.Expected += r.Verify.Expected
		out.Verify.Lost += r.Verify.Lost
		out.Verify.Duplicated += r.Verify.Duplicated
		out.Verify.OutOfOrder += r.Verify.OutOfOrder
		out.Verify.UnackedPushes += r.Verify.UnackedPushes
		out.Verify.Gaps += r.Verify.Gaps
		for k, v := range r.Verify.Closed {
			if out.Verify.Closed == nil {
				out.Verify.Closed = map[string]int{}
			}
			out.Verify.Closed[k] += v
		}
		for _, pair := range []struct {
			into *hdrhistogram.Histogram
			from *hdrhistogram.Snapshot
		}{{ack, r.AckHist}, {push, r.PushHist}, {syn, r.SyncHist}} {
			if pair.from != nil {
				pair.into.Merge(hdrhistogram.Import(pair.from))
			}
		}
		out.Memory = r.Memory
	}
	out.AckRate = float64(out.Acked) / out.Elapsed
	out.PushRate = float64(out.Pushes) / out.Elapsed
	out.SyncRate = float64(out.Syncs) / out.Elapsed
	out.SendToAck, out.SendToPush, out.SyncLat = summarize(ack), summarize(push), summarize(syn)
	out.Server, out.Profile = rs[0].Server, rs[0].Profile
	var err error
	out.Intervals, err = mergeIntervals(rs)
	return out, err
}
