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
//	parley erase --account A --service-credential S [--url U]
//	                            erase an account through a gateway's HTTP API
//	parley backup --out FILE --service-credential S [--url U]
//	                            back up a running single node
//	parley restore --from FILE [--data-dir D]
//	                            restore a backup into a new data directory
//	parley replay --projection store|cache|all [--from earliest|TIME]
//	                            rebuild read models from the log
//	parley log repair [flags]
//	                            accept that the embedded log lost records
//	parley help [command]       list the commands, or one command's flags
//
// Every flag can also be set by an environment variable, PARLEY_ and the
// flag's name in capitals with '-' as '_' (--data-dir is PARLEY_DATA_DIR),
// parsed exactly as the flag would be (flags.go). Help (-h, --help, help)
// prints to stdout and exits 0; every error exits 2, with every problem of
// the configuration listed at once and no secret's value in any message.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/infra/logthrottle"
)

func main() {
	// Everything parley writes — the log, the token secret — is the
	// operator's alone: files 0600, directories 0700, whatever a library
	// asks for (the embedded broker asks for 0644 and 0755).
	syscall.Umask(0o077)
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "parley:", err)
		os.Exit(2)
	}
}

// command is one of parley's commands, as `parley help` lists it.
type command struct {
	name     string
	synopsis string // after "parley ", in the usage
	summary  string // one line, for `parley help` and the command's -h
	run      func(args []string, stdout, stderr io.Writer) error
}

// commands lists every command in the order help shows them. It is a
// function, not a variable, because the commands' usage looks itself up in
// it: a variable would be an initialization cycle.
func commands() []command {
	return []command{
		{"serve", "[serve] [flags]", "run the server (the default command): a single node, or a gateway and/or projector of a cluster", serveCmd},
		{"token", "token --account A [flags]", "mint a development token signed with --token-secret or <data-dir>/token.secret", token},
		{"broker", "broker [flags]", "run only the embedded Kafka-protocol broker, for several processes on one host to share", broker},
		{"logout", "logout --account A [flags]", "publish a UserLoggedOut event, as the user service would", logoutCmd},
		{"tap", "tap [flags]", "print the event stream as NDJSON, one event a line", tap},
		{"erase", "erase --account A [flags]", "erase an account: destroy its data keys and drop its bodies, cursors and memberships from every read model", eraseCmd},
		{"backup", "backup --out FILE [flags]", "back up a running single node through its HTTP API: its store, its log and its token secret at one moment", backupCmd},
		{"restore", "restore --from FILE [flags]", "restore a backup into a new data directory", restoreCmd},
		{"replay", "replay [flags]", "rebuild the history (PostgreSQL) and/or the 7-day cache (Redis) from the log", replay},
		{"log", "log repair [flags]", "accept that the embedded log lost records: keep what it holds, move to the next log epoch", logCmd},
		{"help", "help [command]", "list the commands, or show one command's flags", nil},
	}
}

func findCommand(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// run runs the command args name (serve if args start with a flag). A
// request for help is not an error.
func run(args []string, stdout, stderr io.Writer) error {
	name := "serve"
	if len(args) > 0 {
		switch a := args[0]; {
		case a == "-h" || a == "-help" || a == "--help":
			return usage(stdout)
		case a != "" && a[0] != '-':
			name, args = a, args[1:]
		}
	}
	if name == "help" {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return usage(stdout)
		}
		name, args = args[0], []string{"-h"}
	}
	c, ok := findCommand(name)
	if !ok {
		return fmt.Errorf("unknown command %q (see parley help)", name)
	}
	if c.run == nil { // parley help help
		return usage(stdout)
	}
	if err := c.run(args, stdout, stderr); !errors.Is(err, flag.ErrHelp) {
		return err
	}
	return nil
}

// usage lists every command with a line each.
func usage(w io.Writer) error {
	fmt.Fprint(w, "usage: parley <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-7s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nparley <command> -h (or parley help <command>) lists a command's flags.\nEvery flag can also be set by an environment variable: --data-dir by\nPARLEY_DATA_DIR. A configuration error exits with status 2.\n")
	return nil
}

func serveCmd(args []string, stdout, _ io.Writer) error {
	cfg, err := parseServe(args, stdout)
	if err != nil {
		return err
	}
	return serve(cfg)
}

func serve(cfg node.Config) error {
	// What the log held back is written before the process ends: a
	// failure that repeats until the stop is counted to its end.
	if h, ok := cfg.Logger.Handler().(*logthrottle.Handler); ok {
		defer h.Flush()
	}
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
