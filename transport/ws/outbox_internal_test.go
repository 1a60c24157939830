package ws

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// BenchmarkOutboxIdleWrite queues one 200-byte frame at a time on an idle
// connection's outbox and waits for it to be written, as a push to a
// device that gets a message now and then does: what a frame costs the
// server besides the syscall.
func BenchmarkOutboxIdleWrite(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	if server == nil {
		b.Fatal("no connection")
	}
	defer server.Close()
	go func() { _, _ = io.Copy(io.Discard, client) }()
	o := newOutbox(server, 1<<20, NewBudget(1<<30), 10*time.Second, func() { b.Error("overflow") })
	frame := make([]byte, 200)
	b.ReportAllocs()
	for b.Loop() {
		o.push(opText, frame)
		for writing := true; writing; {
			runtime.Gosched()
			o.mu.Lock()
			writing = o.writing
			o.mu.Unlock()
		}
	}
}
