package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections/progress"
)

// AckedName is the progress under which a single node keeps, per log
// epoch, the offset after the last record the log acknowledged to it.
const AckedName = "log.acked"

// epochFile, under the data dir, holds the log epoch a repair moved to:
// a node never runs below it, whatever --log-epoch says.
const epochFile = "log-epoch"

// LogLoss is a partition whose log ends below what Parley holds: records
// it acknowledged, or read models applied, are gone from the log.
type LogLoss struct {
	Partition int32
	// End is the offset after the log's last record; Need is the offset
	// after the last record Parley acknowledged or applied.
	End, Need int64
}

// LogLossError refuses to start on a log shorter than what Parley holds:
// serving it would lose acknowledged messages silently and give their
// msgids to new ones.
type LogLossError struct {
	Topic  string
	Epoch  uint8
	Losses []LogLoss
	// Embedded says the log and the read models are a single node's own
	// (embedded broker and store), which `parley log repair` can move to
	// a new epoch.
	Embedded bool
}

func (e *LogLossError) Error() string {
	var parts []string
	for _, l := range e.Losses {
		parts = append(parts, fmt.Sprintf("partition %d ends at offset %d, below offset %d", l.Partition, l.End, l.Need))
	}
	fix := "move to a new log epoch (docs/operations.md#log-epoch)"
	if e.Embedded {
		fix = fmt.Sprintf("accept the loss with `parley log repair`, which moves to log epoch %d", e.Epoch+1)
	}
	return fmt.Sprintf("the event log lost records Parley acknowledged or applied (topic %s, log epoch %d): %s; "+
		"refusing to start, since new messages would reuse their msgids: restore the data directory from a backup, or %s",
		e.Topic, e.Epoch, strings.Join(parts, "; "), fix)
}

// ErrNothingToRepair is returned by RepairLog when the log holds all that
// Parley acknowledged and applied.
var ErrNothingToRepair = errors.New("the event log holds everything Parley acknowledged and applied: nothing to repair")

// checkLog compares the log's end offsets with what Parley holds — the
// trackers' progress — and refuses a shorter log, unless the node was
// started to repair it.
func (n *Node) checkLog(ends map[int32]int64, held ...interface{ Next(partition int32) int64 }) error {
	var losses []LogLoss
	for p := int32(0); p < n.events.Partitions(); p++ {
		need := int64(0)
		for _, t := range held {
			need = max(need, t.Next(p))
		}
		if ends[p] < need {
			losses = append(losses, LogLoss{Partition: p, End: ends[p], Need: need})
		}
	}
	if len(losses) == 0 {
		return nil
	}
	err := &LogLossError{Topic: n.events.Topic(), Epoch: n.events.Epoch(), Losses: losses, Embedded: n.broker != nil && n.stores.embedded != nil}
	if !n.cfg.AcceptLogLoss {
		return err
	}
	n.lost = err
	n.log.Error("starting on a log that lost records, to repair it", "err", err)
	return nil
}

// checkStart says, loudly, which durable read models the log's retention
// has already outrun: records they never applied are gone, and their
// consumer groups will skip them. (A single node says so as it picks
// where its reader starts, in readFrom.)
func (n *Node) checkStart(durable []DurableModel) error {
	start, err := n.events.StartOffsets()
	if err != nil {
		return err
	}
	for p := int32(0); p < n.events.Partitions(); p++ {
		for _, d := range durable {
			if next := d.Tracker.Next(p); next < start[p] {
				n.log.Error("the log no longer holds records a read model has not applied: its retention is shorter than the read model's lag, and they are skipped",
					"projection", d.Name, "partition", p, "applied_up_to", next, "log_starts_at", start[p])
			}
		}
	}
	return nil
}

// ackedTracker keeps, in the embedded store, how far the log acknowledged
// each partition's appends, so that a start can tell a log that lost
// records nobody applied yet.
func (n *Node) ackedTracker(ctx context.Context, db *pebble.DB) (*progress.Tracker, error) {
	tr, err := progress.New(ctx, progress.NewPebbleSaved(db, ProgressName(AckedName, n.events.Epoch())),
		progress.Config{Name: AckedName, FlushInterval: 10 * time.Millisecond, Logger: n.log})
	if err != nil {
		return nil, err
	}
	n.closers = append(n.closers, tr.Close)
	n.events.TrackAppends(tr)
	return tr, nil
}

// storedEpoch reads the log epoch a repair moved the data dir to; 0 when
// none did.
func storedEpoch(dataDir string) (uint8, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, epochFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cannot read the log epoch: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 8)
	if err != nil || v < 1 || v > events.MaxEpoch {
		return 0, fmt.Errorf("cannot read the log epoch: %s holds %q, want 1..%d", filepath.Join(dataDir, epochFile), b, events.MaxEpoch)
	}
	return uint8(v), nil
}

// storeEpoch writes epoch to the data dir, durably: written to a new
// file, synced, renamed over the old one, and the directory synced.
func storeEpoch(dataDir string, epoch uint8) error {
	path := filepath.Join(dataDir, epochFile)
	tmp := path + ".tmp"
	if err := writeSynced(tmp, []byte(strconv.Itoa(int(epoch))+"\n")); err != nil {
		return fmt.Errorf("cannot write the log epoch: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("cannot write the log epoch: %w", err)
	}
	return syncDir(dataDir)
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

// embeddedEpoch is the epoch a single node runs at: the configured one,
// or the one a repair moved its data dir to if that is higher. A higher
// configured epoch is stored, so that forgetting the flag later cannot
// take msgids back down.
func (n *Node) embeddedEpoch() error {
	stored, err := storedEpoch(n.cfg.DataDir)
	if err != nil {
		return err
	}
	want := max(n.cfg.Kafka.Epoch, 1)
	switch {
	case stored > want:
		n.log.Info("log epoch raised by a repair of the log or a restore", "configured", want, "epoch", stored)
		n.cfg.Kafka.Epoch = stored
	case want > stored && want > 1:
		return storeEpoch(n.cfg.DataDir, want)
	}
	return nil
}

// RepairReport says what RepairLog did.
type RepairReport struct {
	// Lost are the partitions that had lost records, in the old epoch.
	Lost *LogLossError
	// Moved is where the old log now is; Epoch is the new log epoch.
	Moved string
	Epoch uint8
}

// RepairLog accepts that a single node's log lost records: it starts the
// node on the damaged log, so that the read models apply every record it
// still holds, stops it, moves the log aside and raises the log epoch by
// one. The next start begins an empty log in the new epoch: every new
// msgid is above every msgid of the old one, so none is ever reused.
// A data dir without a store is refused: a repair of a mistyped path
// would otherwise start a new node there and find nothing lost.
func RepairLog(ctx context.Context, cfg Config) (RepairReport, error) {
	store := filepath.Join(cfg.DataDir, storeDir)
	if st, err := os.Stat(store); err != nil || !st.IsDir() {
		return RepairReport{}, fmt.Errorf("%s holds no Parley node (no %s): check --data-dir", cfg.DataDir, store)
	}
	return nextEpoch(ctx, cfg, "lost", 0)
}

// nextEpoch moves a single node to the next log epoch, as RepairLog
// describes, or to atLeast if that is higher, and names the old log's new
// place after why: "lost" only when the log lost records
// (ErrNothingToRepair otherwise), "restored" whatever it holds.
func nextEpoch(ctx context.Context, cfg Config, why string, atLeast uint8) (RepairReport, error) {
	cfg.setDefaults()
	if len(cfg.Kafka.Brokers) > 0 || cfg.Postgres != nil {
		return RepairReport{}, errors.New("moving to the next log epoch by itself is for a single node's embedded log and store; a log on Kafka, or read models in PostgreSQL, move to a new log epoch by hand (docs/operations.md#log-epoch)")
	}
	cfg.AcceptLogLoss = true
	cfg.Offline = true // no client may append to a log about to move aside
	cfg.Console = false
	n, err := Start(ctx, cfg)
	if err != nil {
		return RepairReport{}, err
	}
	lost, epoch := n.lost, n.events.Epoch()
	if err := n.Shutdown(ctx); err != nil {
		return RepairReport{}, err
	}
	if lost == nil && why == "lost" {
		return RepairReport{}, ErrNothingToRepair
	}
	next := max(epoch+1, atLeast)
	if epoch >= events.MaxEpoch || next > events.MaxEpoch {
		return RepairReport{Lost: lost}, fmt.Errorf("cannot move past log epoch %d: the last one is %d, and a msgid has no room for more", epoch, events.MaxEpoch)
	}
	// The log moves first: a stop between the two steps leaves an empty
	// log in the old epoch, which the next start refuses again — never the
	// old log in a new epoch, which would renumber its messages.
	moved := fmt.Sprintf("%s.%s-e%d-%s", cfg.EmbeddedBroker.DataDir, why, epoch, time.Now().UTC().Format("20060102T150405Z"))
	if err := os.Rename(cfg.EmbeddedBroker.DataDir, moved); err != nil {
		return RepairReport{Lost: lost}, fmt.Errorf("cannot move the log aside: %w", err)
	}
	if err := syncDir(filepath.Dir(moved)); err != nil {
		return RepairReport{Lost: lost}, err
	}
	if err := storeEpoch(cfg.DataDir, next); err != nil {
		return RepairReport{Lost: lost, Moved: moved}, err
	}
	return RepairReport{Lost: lost, Moved: moved, Epoch: next}, nil
}
