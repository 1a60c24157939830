package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/events"
)

// logCmd runs `parley log repair`: with the server stopped, the node
// starts on its damaged log, applies what the log still holds, and moves
// to the next log epoch (node.RepairLog).
func logCmd(args []string, stdout, _ io.Writer) error {
	sub := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	cfg, err := parseRepair(args, stdout)
	if err != nil {
		return err
	}
	if sub != "repair" {
		return fmt.Errorf("unknown log command %q: want parley log repair [flags]", sub)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := node.RepairLog(ctx, cfg)
	if errors.Is(err, node.ErrNothingToRepair) {
		fmt.Fprintln(stdout, err)
		return nil
	}
	if err != nil {
		return err
	}
	for _, l := range rep.Lost.Losses {
		fmt.Fprintf(stdout, "partition %d: the log ended at offset %d, Parley held up to offset %d\n", l.Partition, l.End, l.Need)
	}
	fmt.Fprintf(stdout, "the damaged log is in %s; the next start begins log epoch %d\n", rep.Moved, rep.Epoch)
	return nil
}

// parseRepair reads the flags of `parley log repair`: those of serve
// that say where a single node's log and store are and how its log is
// laid out.
func parseRepair(args []string, stdout io.Writer) (node.Config, error) {
	f := newFlags("log repair", stdout)
	dataDir := f.string("data-dir", "parley-data", "the single node's data directory")
	topic := f.string("topic", events.DefaultConversationTopic, "conversation topic, the server's")
	partitions := f.int("partitions", events.DefaultPartitions, "partitions of the conversation topic, the server's")
	epoch := f.int("log-epoch", 1, fmt.Sprintf("log epoch (1..%d), the server's", events.MaxEpoch))
	if err := f.parse(args); err != nil {
		return node.Config{}, err
	}
	f.check("data-dir", *dataDir != "", "cannot be empty")
	f.check("topic", validTopic(*topic), "want 1..249 letters, digits, '.', '_' or '-'")
	f.check("partitions", *partitions >= 1 && *partitions <= 10000, "want 1..10000")
	f.check("log-epoch", *epoch >= 1 && *epoch <= events.MaxEpoch, "want 1..%d", events.MaxEpoch)
	if err := f.err(); err != nil {
		return node.Config{}, err
	}
	cfg := node.Config{DataDir: *dataDir}
	cfg.Kafka.Topic, cfg.Kafka.Partitions, cfg.Kafka.Epoch = *topic, int32(*partitions), uint8(*epoch)
	cfg.EmbeddedBroker.Addr = "127.0.0.1:0"
	return cfg, nil
}
