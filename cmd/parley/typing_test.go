package main

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

func TestTypingEmbedded(t *testing.T) {
	srv := startServer(t, nil)
	typingScenario(t, srv, srv)
}

func TestTypingCluster(t *testing.T) {
	c := startCluster(t)
	gw1, gw2 := c.instance(gatewayOnly), c.instance(gatewayOnly)
	c.instance(projectorOnly)
	typingScenario(t, gw1, gw2)
}

// typingOf are the typing pushes d got in conv.
func typingOf(d *device, conv string) []wire.ServerFrame {
	var out []wire.ServerFrame
	for _, f := range d.received() {
		if f.Type == wire.TypeTypingPush && f.Conversation == conv {
			out = append(out, f)
		}
	}
	return out
}

// typingScenario: typing reaches the other participants' devices on
// either gateway, not the typist's own, at most once a second; bad input
// is refused.
func typingScenario(t *testing.T, a, b *server) {
	ctx := ctxT(t)
	alice, aliceLaptop := a.device("alice", "phone"), b.device("alice", "laptop")
	bob, bobLaptop, carol := b.device("bob", "phone"), a.device("bob", "laptop"), b.device("carol", "phone")
	direct := "d:alice:bob"
	if err := alice.c.Typing(ctx, direct); err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]*device{"bob's phone": bob, "bob's laptop": bobLaptop} {
		waitFor(t, func() bool { return len(typingOf(d, direct)) == 1 })
		if f := typingOf(d, direct)[0]; f.Account != "alice" || f.ID != "" {
			t.Errorf("%s got %+v", name, f)
		}
	}

	// Within a second, the same account and conversation is refused.
	_, err := alice.c.Do(ctx, wire.Request{Type: wire.TypeTyping, Conversation: direct})
	if client.CodeOf(err) != wire.CodeRateLimited {
		t.Errorf("a second typing at once: %v, want rate_limited", err)
	}
	var e *client.Error
	if !errors.As(err, &e) || e.RetryAfter <= 0 || e.RetryAfter > time.Second {
		t.Errorf("rate_limited without a retry time: %v", err)
	}

	g, err := bob.c.CreateGroup(ctx, "typists", "alice", "carol")
	if err != nil {
		t.Fatal(err)
	}
	conv := "g:" + g.Group
	if err := bob.c.Typing(ctx, conv); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		return len(typingOf(carol, conv)) == 1 && len(typingOf(alice, conv)) == 1 && len(typingOf(aliceLaptop, conv)) == 1
	})
	time.Sleep(1100 * time.Millisecond)
	if err := alice.c.Typing(ctx, direct); err != nil {
		t.Errorf("typing after a second: %v", err)
	}
	waitFor(t, func() bool { return len(typingOf(bob, direct)) == 2 })
	// Nobody got their own signal.
	if n := len(typingOf(aliceLaptop, direct)) + len(typingOf(bobLaptop, conv)); n != 0 {
		t.Errorf("%d typing pushes went to the typist's own devices", n)
	}

	rows := []struct {
		name string
		c    *client.Client
		conv string
		want wire.Code
	}{
		{"unknown group", carol.c, "g:nosuchgroup", wire.CodeNotFound},
		{"not a member", a.dial("erin", "phone"), conv, wire.CodeNotMember},
		{"another's direct conversation", carol.c, direct, wire.CodeForbidden},
		{"bad conversation id", carol.c, "d:zed:carol", wire.CodeInvalidArgument},
		{"no conversation", carol.c, "", wire.CodeInvalidArgument},
	}
	for _, tt := range rows {
		t.Run(tt.name, func(t *testing.T) {
			if got := client.CodeOf(tt.c.Typing(ctxT(t), tt.conv)); got != tt.want {
				t.Errorf("code %q, want %q", got, tt.want)
			}
		})
	}
	if slices.ContainsFunc(carol.received(), func(f wire.ServerFrame) bool { return f.Type == wire.TypeTypingPush && f.Conversation == direct }) {
		t.Error("carol got typing of a conversation she is not in")
	}
}
