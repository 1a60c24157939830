package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/parley-chat/parley/infra/kafka"
	"github.com/parley-chat/parley/infra/logthrottle"
)

func broker(args []string, stdout, stderr io.Writer) error {
	f := newFlags("broker", stdout)
	dir := f.string("data-dir", "parley-data", "directory of the log (in <data-dir>/log)")
	listen := f.string("broker-listen", "127.0.0.1:9092", "loopback address to listen on; port 0 picks a free one")
	fsync := f.bool("log-fsync", false, "fsync every batch before acknowledging")
	if err := f.parse(args); err != nil {
		return err
	}
	f.check("data-dir", *dir != "", "cannot be empty")
	cfg := kafka.EmbeddedConfig{DataDir: filepath.Join(*dir, "log"), Addr: *listen, SyncWrites: *fsync,
		Logger: slog.New(logthrottle.New(slog.NewTextHandler(stderr, nil), 0, 0))}
	f.checkErr("broker-listen", checkLoopback(*listen))
	if err := f.err(); err != nil {
		return err
	}
	b, err := kafka.StartEmbedded(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "parley broker listening on", b.Addrs())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	b.Close()
	return nil
}
