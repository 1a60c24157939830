// Command parley runs a Parley messaging server. With no arguments it serves
// the embedded default: one process, the event log in-process under
// ./parley-data, the WebSocket gateway on 127.0.0.1:8080.
//
//	parley [serve] [flags]      run the server (the default)
//	parley token --account A --device D   mint a development token
//	parley broker [flags]       run only the embedded Kafka-protocol broker,
//	                            for several instances to share
//	parley logout --account A [--device D]   publish a UserLoggedOut event,
//	                            as the user service would
//	parley tap [--group G] [--from earliest|latest|TIME] [--types ...]
//	                            print the event stream as NDJSON
//	parley replay --projection store|cache|all [--from earliest|TIME]
//	                            rebuild read models from the log
//
// Every flag can also be set by an environment variable, PARLEY_ and the
// flag's name in capitals with '-' as '_' (--data-dir is PARLEY_DATA_DIR).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/kafka"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "parley:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		cfg, err := parseServe(args, stderr)
		if err != nil {
			return err
		}
		return serve(cfg)
	case "token":
		return token(args, stdout, stderr)
	case "broker":
		return broker(args, stderr)
	case "logout":
		return logoutCmd(args, stdout, stderr)
	case "tap":
		return tap(args, stdout, stderr)
	case "replay":
		return replay(args, stdout, stderr)
	case "help":
		fmt.Fprintln(stdout, "usage: parley [serve|token|broker|logout|tap|replay] [flags]; parley <command> -h for its flags")
		return nil
	}
	return fmt.Errorf("unknown command %q (want serve, token, broker, logout, tap or replay)", cmd)
}

func serve(cfg node.Config) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.Start(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	cfg.Logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return n.Shutdown(shutdownCtx)
}

func broker(args []string, stderr io.Writer) error {
	f := newFlags("broker", stderr)
	dir := f.string("data-dir", "parley-data", "directory of the log (in <data-dir>/log)")
	listen := f.string("broker-listen", "127.0.0.1:9092", "loopback address to listen on")
	fsync := f.bool("log-fsync", false, "fsync every batch before acknowledging")
	if err := f.parse(args); err != nil {
		return err
	}
	b, err := kafka.StartEmbedded(kafka.EmbeddedConfig{DataDir: filepath.Join(*dir, "log"), Addr: *listen, SyncWrites: *fsync})
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

func logoutCmd(args []string, stdout, stderr io.Writer) error {
	f := newFlags("logout", stderr)
	brokers := f.string("kafka-brokers", "127.0.0.1:9092", "comma-separated Kafka brokers (the embedded broker by default)")
	account := f.string("account", "", "account to log out (required)")
	device := f.string("device", "", "only this device; empty logs out every device")
	reason := f.string("reason", "logged out", "reason, for logs")
	if err := f.parse(args); err != nil {
		return err
	}
	if _, err := domain.ParseAccountID(*account); err != nil {
		return fmt.Errorf("--account: %w", err)
	}
	if *device != "" {
		if _, err := domain.ParseDeviceID(*device); err != nil {
			return fmt.Errorf("--device: %w", err)
		}
	}
	l, err := kafka.Open(kafka.Config{Brokers: strings.Split(*brokers, ","), UsersOnly: true})
	if err != nil {
		return err
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := events.UserLoggedOut{Account: *account, Device: *device, Reason: *reason, At: time.Now().UnixMilli()}
	pos, err := l.AppendUser(ctx, uuid.NewString(), e)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "published %s for %s at partition %d offset %d\n", e.EventName(), *account, pos.Partition, pos.Offset)
	return nil
}
