package main

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/transport/client"
)

// BenchmarkSendWithNotify measures a send's round trip (send to ack) to
// an offline recipient on a single node: without notifications, with a
// webhook that answers at once, one that answers 500 to everything, and
// one that never answers. The notify projection runs on a reader of its
// own, so the four should not differ. Compare with benchstat:
//
//	go test -run XXX -bench SendWithNotify -count 6 ./cmd/parley/
func BenchmarkSendWithNotify(b *testing.B) {
	for _, tc := range []struct {
		name   string
		notify bool
		status int // 0: hang
	}{
		{"off", false, 0},
		{"ok", true, http.StatusOK},
		{"failing", true, http.StatusInternalServerError},
		{"hanging", true, 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			hook := startWebhook(b)
			release := make(chan struct{})
			defer close(release)
			if tc.notify && tc.status == 0 {
				hook.hang = release
			}
			if tc.status == http.StatusInternalServerError {
				for range 1_000_000 {
					hook.script = append(hook.script, tc.status)
				}
			}
			mod := func(*node.Config) {}
			if tc.notify {
				mod = withNotify(hook)
			}
			s := startServer(b, mod)
			alice := s.dial("alice", "phone")
			ctx := ctxT(b)
			b.ResetTimer()
			for i := range b.N {
				if _, err := alice.Send(ctx, client.Target{Account: "bob"}, fmt.Sprint(tc.name, i), "text", "hi"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
