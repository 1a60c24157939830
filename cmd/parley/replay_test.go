package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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
	if _, err := lock.Exec(ctxT(t), "LOCK TABLE "+pgx.Identifier{pg.Schema, "direct_messages"}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
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
			err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
				WHERE NOT l.granted AND c.relname = 'direct_messages'`).Scan(&waiting)
			if err == nil && waiting > 0 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	_, _, err = runReplay(ctx, cfg)
	<-released
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("an interrupted replay returned %v, want an error that says so", err)
	}
	var recorded int
	if err := pool.QueryRow(ctxT(t), `SELECT count(*) FROM projection_progress WHERE projection = $1 AND next_offset > 0`, store.Name).Scan(&recorded); err != nil {
		t.Fatal(err)
	}
	if recorded != 0 {
		t.Errorf("the interrupted replay recorded the store's progress in %d partitions", recorded)
	}

	if _, _, err := runReplay(ctxT(t), cfg); err != nil {
		t.Fatalf("the replay run again: %v", err)
	}
	if got := (&testCluster{t: t, pool: pool}).pgHistory("d:alice:bob"); len(got) != n {
		t.Errorf("the replay run again rebuilt %d messages, want %d", len(got), n)
	}
}
