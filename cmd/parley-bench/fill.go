package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/transport/client"
)

// The fill scenario writes history: every message goes from a connected
// device to one of --offline-peers accounts that never connect, so
// nothing is pushed and the run measures what every message costs the
// server on its way to the log and into each read model. After the last
// ack the generator watches the server's parley_projection_lag_records
// until every projection has applied everything, and reports the rate of
// fully processed messages (Fill).

// Fill is what the fill scenario measured beyond the acks.
type Fill struct {
	// SettledSeconds is the time from the first send until every
	// projection of the server had applied every record (lag 0), or the
	// time waited when it did not (Settled false).
	SettledSeconds float64 `json:"settledSeconds"`
	Settled        bool    `json:"settled"`
	// ProcessedPerSecond is the acked messages over SettledSeconds: how
	// many messages a second were written and fully projected.
	ProcessedPerSecond float64 `json:"processedPerSecond"`
	// LagAtEnd is the records the projections had not applied when the
	// last send ended, by projection.
	LagAtEnd map[string]int64 `json:"lagAtLastAck,omitempty"`
	Error    string           `json:"error,omitempty"`
}

// fillNext sends the i-th message from a connected device, in turn, to a
// random offline account.
func (l *load) fillNext(prefix string) func(i int64) func(context.Context) {
	return func(i int64) func(context.Context) {
		d := l.devices[int(i)%len(l.devices)]
		peer := fmt.Sprintf("%s-off-%d", prefix, rand.IntN(l.cfg.OfflinePeers))
		return func(ctx context.Context) { l.send(ctx, d, client.Target{Account: peer}, nil, i) }
	}
}

// settle waits until the server's projections have caught up with its
// log, up to --settle, and fills in rep.Fill.
func (l *load) settle(ctx context.Context, started time.Time, rep *Report) {
	f := &Fill{}
	rep.Fill = f
	if l.cfg.MetricsURL == "" {
		f.Error = "not measured: --metrics-url is empty"
		return
	}
	deadline := time.Now().Add(l.cfg.Settle)
	for first := true; ; first = false {
		lag, err := readLag(ctx, l.cfg.MetricsURL)
		switch {
		case err != nil:
			f.Error = err.Error()
		case first:
			f.LagAtEnd = lag
		}
		if err == nil && total(lag) == 0 {
			f.Settled, f.Error = true, ""
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.SettledSeconds = time.Since(started).Seconds()
	if f.Settled {
		f.ProcessedPerSecond = float64(rep.Acked) / f.SettledSeconds
	}
	l.logf("projections caught up: %v after %.1fs (%.0f messages/s fully processed)", f.Settled, f.SettledSeconds, f.ProcessedPerSecond)
}

func total(m map[string]int64) (n int64) {
	for _, v := range m {
		n += v
	}
	return n
}

// readLag sums the server's parley_projection_lag_records by projection.
func readLag(ctx context.Context, metricsURL string) (map[string]int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", metricsURL, resp.Status)
	}
	return parseLag(resp.Body)
}

// parseLag reads parley_projection_lag_records{partition="0",projection="x"} 12
// lines from Prometheus text.
func parseLag(r io.Reader) (map[string]int64, error) {
	out := map[string]int64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		proj, v, ok, err := lagLine(sc.Text())
		if err != nil {
			return nil, err
		}
		if ok {
			out[proj] += int64(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no parley_projection_lag_records in the server's metrics")
	}
	return out, nil
}

// lagLine reads a line of Prometheus text: ok when it is one of
// parley_projection_lag_records, with its projection and value.
func lagLine(line string) (projection string, records float64, ok bool, err error) {
	const name = "parley_projection_lag_records{"
	if !strings.HasPrefix(line, name) {
		return "", 0, false, nil
	}
	labels, value, found := strings.Cut(line[len(name):], "} ")
	if !found {
		return "", 0, false, fmt.Errorf("cannot parse %q", line)
	}
	_, projection, _ = strings.Cut(labels, `projection="`)
	projection, _, _ = strings.Cut(projection, `"`)
	if records, err = strconv.ParseFloat(value, 64); err != nil {
		return "", 0, false, fmt.Errorf("cannot parse %q: %w", line, err)
	}
	return projection, records, true, nil
}
