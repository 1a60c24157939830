package faultnet

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// echo starts a TCP server that writes back every line it reads.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip writes a line and reads it back, within limit.
func roundTrip(c net.Conn, r *bufio.Reader, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	_ = c.SetDeadline(start.Add(limit))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return 0, err
	}
	if _, err := r.ReadString('\n'); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// A cut holds bytes until it heals, a delay slows each way, a reset drops
// the connection, and a connection opened during a cut carries nothing
// until the heal.
func TestProxyCutDelayHealReset(t *testing.T) {
	p, err := Listen(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := roundTrip(c, r, 2*time.Second); err != nil {
		t.Fatalf("healthy path: %v", err)
	}

	p.Cut()
	if _, err := roundTrip(c, r, 300*time.Millisecond); err == nil {
		t.Fatal("a round trip crossed a cut path")
	}
	late, err := net.Dial("tcp", p.Addr()) // accepted, but carries nothing yet
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	lateR := bufio.NewReader(late)
	if _, err := roundTrip(late, lateR, 300*time.Millisecond); err == nil {
		t.Fatal("a connection opened during the cut carried bytes")
	}
	p.Heal()
	// The line written during the cut arrives now.
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatalf("held bytes after the heal: %v", err)
	}
	_ = late.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := lateR.ReadString('\n'); err != nil {
		t.Fatalf("held bytes of the late connection after the heal: %v", err)
	}

	p.Delay(200 * time.Millisecond)
	d, err := roundTrip(c, r, 2*time.Second)
	if err != nil || d < 400*time.Millisecond {
		t.Fatalf("round trip on a 200ms path took %v (%v), want at least 400ms", d, err)
	}
	p.Heal()

	p.Reset()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("a reset connection still reads")
	}
	again, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if _, err := roundTrip(again, bufio.NewReader(again), 2*time.Second); err != nil {
		t.Fatalf("new connection after a reset: %v", err)
	}
}
