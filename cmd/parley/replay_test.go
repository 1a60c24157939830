package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/kafka"
	"github.com/parley-chat/parley/projections/store"
)

// A replay interrupted (SIGINT or SIGTERM) fails and records no progress:
// the read models must not be said to hold what it never applied, or the
// projector would resume past it. Run again, it rebuilds everything.
func TestInterruptedReplayRecordsNoProgress(t *testing.T) {
	c := startCluster(t)
	const topic, n = "interrupted.conversations.v1", 20
	l, err := kafka.Open(kafka.Config{Brokers: c.brokers, Topic: topic, UsersTopic: "interrupted.users.v1", Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := l.Append(ctxT(t), fmt.Sprint("m", i), events.MessageSent{MessageID: uuid.NewString(), ClientMsgID: fmt.Sprint("c", i),
			Conversation: "d:alice:bob", SenderAccount: "alice", SenderDevice: "phone", Kind: "text",
			Body: fmt.Sprint("message ", i), ServerTime: time.Now().UnixMilli()}); err != nil {
			t.Fatal(err)
		}
	}
	_ = l.Close()
	pg, _, pool := emptySchema(t)
	cfg, err := parseReplay([]string{"--kafka-brokers", strings.Join(c.brokers, ","), "--partitions", "4", "--topic", topic,
		"--projection", "store", "--postgres-dsn", pg.DSN, "--postgres-schema", pg.Schema}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.progressOut = io.Discard

	// The history's table is locked, so the replay's first write waits;
	// the replay is interrupted while it does.
	lock, err := pool.Begin(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	table := pgx.Identifier{pg.Schema, "direct_messages"}.Sanitize()
	if _, err := lock.Exec(ctxT(t), "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	ctx, interrupt := context.WithCancel(ctxT(t))
	released := make(chan struct{})
	go func() {
		defer close(released)
		// The lock goes once the replay is interrupted: the history's
		// write in flight then ends, as it would have anyway.
		defer func() { _ = lock.Rollback(context.Background()) }()
		defer interrupt()
		for ctx.Err() == nil {
			var waiting int
			err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::regclass`,
				table).Scan(&waiting)
			if err == nil && waiting > 0 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	_, _, err = runReplay(ctx, cfg)
	interrupt() // had it returned before the write, the poller stops
	<-released
	if !errors.Is(err, errInterrupted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("an interrupted replay returned %v, want one that says so", err)
	}
	recorded := func() (parts int) {
		t.Helper()
		if err := pool.QueryRow(ctxT(t), `SELECT count(*) FROM projection_progress WHERE projection = $1 AND next_offset > 0`,
			node.ProgressName(store.Name, 1)).Scan(&parts); err != nil {
			t.Fatal(err)
		}
		return parts
	}
	if parts := recorded(); parts != 0 {
		t.Errorf("the interrupted replay recorded the store's progress in %d partitions", parts)
	}

	if _, _, err := runReplay(ctxT(t), cfg); err != nil {
		t.Fatalf("the replay run again: %v", err)
	}
	if got := (&testCluster{t: t, pool: pool}).pgHistory("d:alice:bob"); len(got) != n {
		t.Errorf("the replay run again rebuilt %d messages, want %d", len(got), n)
	}
	if recorded() == 0 {
		t.Error("the replay run to its end recorded no progress")
	}
}
