// Command parley runs a Parley messaging server. With no arguments it serves
// the embedded default: one process, the event log in-process under
// ./parley-data, the WebSocket gateway on 127.0.0.1:8080.
//
//	parley [serve] [flags]      run the server (the default)
//	parley token --account A --device D   mint a development token
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
	"syscall"
	"time"

	"github.com/parley-chat/parley/infra/node"
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
	case "help":
		fmt.Fprintln(stdout, "usage: parley [serve|token] [flags]; parley <command> -h for its flags")
		return nil
	}
	return fmt.Errorf("unknown command %q (want serve or token)", cmd)
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
