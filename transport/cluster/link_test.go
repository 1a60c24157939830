package cluster

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
)

// local records what a receiving gateway is told.
type local struct {
	mu     sync.Mutex
	frames []string
	uids   []domain.UniqueID
	kicks  map[domain.UniqueID]string
}

func (l *local) DeliverUIDs(uids []domain.UniqueID, frame []byte, _ time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.uids = append(l.uids, uids...)
	l.frames = append(l.frames, string(frame))
}

func (l *local) Kick(uid domain.UniqueID, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kicks == nil {
		l.kicks = map[domain.UniqueID]string{}
	}
	l.kicks[uid] = reason
}

func (l *local) snapshot() ([]string, map[domain.UniqueID]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := map[domain.UniqueID]string{}
	for u, r := range l.kicks {
		k[u] = r
	}
	return append([]string(nil), l.frames...), k
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func serve(t *testing.T, addr string, r *Receiver) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, r)
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Forwards queued while the peer is down arrive once it is up; a forward
// that could not be queued closes its devices as slow consumers instead of
// vanishing (I5); a peer with another secret receives nothing.
func TestLinkDeliversQueuedAndKicksDropped(t *testing.T) {
	secret := []byte("cluster-secret-for-tests")
	addr := freeAddr(t)
	links := NewLinks(secret, 1, quiet)
	defer links.Close()
	frame := json.RawMessage(`{"type":"message"}`)
	if err := links.Send(addr, Forward{UIDs: []domain.UniqueID{"alice/phone"}, Frame: frame}); err != nil {
		t.Fatal(err)
	}
	err := links.Send(addr, Forward{UIDs: []domain.UniqueID{"bob/phone"}, Frame: frame})
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("second forward to a down peer with a queue of 1: %v, want ErrQueueFull", err)
	}
	links.Drop(addr, []domain.UniqueID{"bob/phone"})

	got := &local{}
	serve(t, addr, NewReceiver(secret, got, quiet))
	deadline := time.Now().Add(10 * time.Second)
	for {
		frames, kicks := got.snapshot()
		if len(frames) == 1 && kicks["bob/phone"] == "slow_consumer" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("frames %v kicks %v", frames, kicks)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A receiver with another secret refuses the link.
	other := freeAddr(t)
	stranger := &local{}
	serve(t, other, NewReceiver([]byte("another-secret-entirely"), stranger, quiet))
	if err := links.Send(other, Forward{UIDs: []domain.UniqueID{"carol/phone"}, Frame: frame}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if frames, _ := stranger.snapshot(); len(frames) != 0 {
		t.Errorf("a receiver with another secret got %v", frames)
	}
}

// Every batch is acknowledged by the receiver, so nothing stays in flight
// on a healthy link; batches written into a connection that then breaks
// are not resent blindly but close their devices with slow_consumer on the
// next connection, before anything else is delivered.
func TestLinkAcknowledgesAndKicksUnacknowledged(t *testing.T) {
	secret := []byte("cluster-secret-for-tests")
	got := &local{}
	addr := freeAddr(t)
	serve(t, addr, NewReceiver(secret, got, quiet))
	links := NewLinks(secret, 0, quiet)
	defer links.Close()
	frame := json.RawMessage(`{"type":"message"}`)
	for i := 0; i < 10; i++ {
		if err := links.Send(addr, Forward{UIDs: []domain.UniqueID{"alice/phone"}, Frame: frame}); err != nil {
			t.Fatal(err)
		}
	}
	links.mu.Lock()
	lk := links.links[addr]
	links.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		frames, _ := got.snapshot()
		_, inFlight := lk.settle(time.Now())
		if len(frames) == 10 && inFlight == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d frames delivered, %d forwards unacknowledged", len(frames), inFlight)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A batch written but never acknowledged (as if lost in a broken
	// socket) makes the link break and its device be kicked.
	lk.sent(1000, []Forward{{UIDs: []domain.UniqueID{"bob/phone"}, Frame: frame}}, time.Now().Add(-2*AckTimeout))
	if err := links.Send(addr, Forward{UIDs: []domain.UniqueID{"carol/phone"}, Frame: frame}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, kicks := got.snapshot()
		if kicks["bob/phone"] == "slow_consumer" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kicks %v, want bob/phone closed as a slow consumer", kicks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
