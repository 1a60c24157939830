// Package kafka is Parley's event log on the Kafka protocol: the embedded
// broker (franz-go's kfake) for single-node deployments and tests, the
// publisher that returns each record's position (a franz-go producer), and
// Watermill subscribers (Sarama). The same code runs against the embedded
// broker and against a real Kafka cluster; only the single node takes two
// shortcuts to its own broker: its reader reads it in process
// (Embedded.RangeSource), and its log appends to it in process
// (Config.Embedded), into the same record batches a producer sends.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// EmbeddedConfig configures the in-process broker.
type EmbeddedConfig struct {
	// DataDir is where the log and committed offsets persist. Required.
	DataDir string
	// Addr is the loopback host:port to listen on; port 0 picks a free one.
	Addr string
	// SyncWrites fsyncs every produced batch, and the directories of new
	// files, before acknowledging it, so an ack survives a power loss, not
	// only a process crash; a failed fsync fails the append. Off by
	// default, as in Kafka: the page cache already survives a crash of the
	// process.
	SyncWrites bool
	// SyncFault, if set, is called before every fsync of the log's files
	// and directories, and an error it returns fails that fsync: for tests
	// of a failing disk.
	SyncFault func(path string) error
	// IndexCacheBytes bounds the memory of the broker's index of record
	// batches (72 bytes a batch): the entries of older batches leave
	// memory and are read back from their segment when a read needs them.
	// Default kfake.DefaultIndexCacheBytes (8 MiB).
	IndexCacheBytes int
	// RetentionCheck is how often the broker drops records past their
	// topic's retention. Default 1m.
	RetentionCheck time.Duration
	// Logger receives the broker's warnings and errors (a failed write of
	// the log, say); its informational lines go to debug. Default
	// slog.Default().
	Logger *slog.Logger
}

func (c *EmbeddedConfig) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RetentionCheck == 0 {
		c.RetentionCheck = time.Minute
	}
}

// Validate reports every problem of c at once.
func (c EmbeddedConfig) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("embedded broker: data dir is required"))
	}
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		errs = append(errs, fmt.Errorf("embedded broker: address %q: %w", c.Addr, err))
	} else {
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			errs = append(errs, fmt.Errorf("embedded broker: address %q must be on loopback", c.Addr))
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			errs = append(errs, fmt.Errorf("embedded broker: port %q: %w", port, err))
		}
	}
	return errors.Join(errs...)
}

// Embedded is a Kafka-protocol broker running in this process.
type Embedded struct {
	cluster *kfake.Cluster
}

// StartEmbedded starts the broker and reloads the log from DataDir.
// Topics are created by EnsureTopics like on any other broker.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	_, portStr, _ := net.SplitHostPort(cfg.Addr)
	port, _ := strconv.Atoi(portStr)
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.DataDir(cfg.DataDir),
		kfake.ClusterID("parley-embedded"),
		kfake.WithLogger(brokerLogger{cfg.Logger.With("component", "embedded-broker")}),
		kfake.BrokerConfigs(map[string]string{"log.cleaner.backoff.ms": strconv.FormatInt(cfg.RetentionCheck.Milliseconds(), 10)}),
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	if cfg.IndexCacheBytes > 0 {
		opts = append(opts, kfake.IndexCacheBytes(cfg.IndexCacheBytes))
	}
	if cfg.SyncFault != nil {
		opts = append(opts, kfake.SyncFault(cfg.SyncFault))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("cannot start the embedded broker: %w", err)
	}
	return &Embedded{cluster: c}, nil
}

// brokerLogger hands the embedded broker's lines to slog.
type brokerLogger struct{ log *slog.Logger }

func (l brokerLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	lvl := slog.LevelDebug
	switch level {
	case kfake.LogLevelError:
		lvl = slog.LevelError
	case kfake.LogLevelWarn:
		lvl = slog.LevelWarn
	}
	if !l.log.Enabled(context.Background(), lvl) {
		return
	}
	l.log.Log(context.Background(), lvl, brokerMessage(format), "detail", fmt.Sprintf(format, args...))
}

// brokerMessage is the part of a broker's line that is the same every
// time (the format's words before its first verb), so that a failure
// repeated for every batch — a full disk, one line per partition and
// write — is one kind of record to a throttled log (infra/logthrottle).
// The whole line is its detail.
func brokerMessage(format string) string {
	if i := strings.IndexByte(format, '%'); i >= 0 {
		format = format[:i]
	}
	if msg := strings.TrimRight(format, " :=-("); msg != "" {
		return msg
	}
	return "embedded broker"
}

// IndexStats reports what the broker's index of record batches costs.
func (e *Embedded) IndexStats() kfake.IndexStats { return e.cluster.IndexStats() }

// Addrs are the broker's host:port addresses, for any Kafka client.
func (e *Embedded) Addrs() []string { return e.cluster.ListenAddrs() }

// Close stops the broker and saves its state. It is idempotent.
func (e *Embedded) Close() { e.cluster.Close() }

// SnapshotFile is one file of the log's directory at a snapshot.
type SnapshotFile = kfake.SnapshotFile

// ErrNotPersisted is the error of a snapshot of a broker whose log is not
// in a directory.
var ErrNotPersisted = kfake.ErrNotPersisted

// Snapshot runs during while the broker appends nothing, then opens every
// file of its log directory with its length at that moment, before the
// next append: what during records of the log's effects (a read model's
// progress, a data key stored before its first message) is never newer
// than the log in the files. Reading each file up to its Size gives the
// directory as a crash at that moment would have left it. The caller
// closes the files.
func (e *Embedded) Snapshot(during func() error) ([]SnapshotFile, error) {
	return e.cluster.Snapshot(during)
}
