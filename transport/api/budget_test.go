package api_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/api/apitest"
	"github.com/parley-chat/parley/transport/wire"
)

// An account's sends and edits, from all its devices, draw on one budget
// of bytes; a send past it is refused rate_limited with a wait, and
// appends nothing. A retry answered with the first ack, and a request
// refused for what it asks, cost nothing; service calls are not counted,
// and other accounts have budgets of their own.
func TestSendBudget(t *testing.T) {
	// The costliest message: every '<' is pushed as \u003c, six bytes.
	big := strings.Repeat("<", domain.MaxBodyBytes)
	if api.MessageCost(big) != api.MaxMessageCost {
		t.Fatalf("the cost of %d escaped characters is %d, want %d", len(big), api.MessageCost(big), api.MaxMessageCost)
	}
	// Room for two of them (twelve plain ones of that length); a byte a
	// second refills nothing within the test.
	e := apitest.New(t, apitest.WithConfig(api.Config{SendRate: 1, SendBurst: 2 * api.MaxMessageCost}))
	bob := api.Target{Account: "bob"}
	refused := func(t *testing.T, err error) {
		t.Helper()
		var limit *api.LimitError
		if api.Code(err) != wire.CodeRateLimited || !errors.As(err, &limit) || api.RetryAfter(err) <= 0 {
			t.Fatalf("want rate_limited with a wait, got %v", err)
		}
	}
	first := send(t, e, alicePhone, bob, "a1", big)
	// The resend of a1 is answered from its reservation: it appends
	// nothing, so it leaves the budget as it was.
	if again := send(t, e, alicePhone, bob, "a1", big); !again.Duplicate || again.MsgID != first.MsgID {
		t.Fatalf("resend %+v, want the first ack", again)
	}
	// An edit refused for what it asks appends nothing either.
	bobs := send(t, e, domain.Sender{Account: "bob", Device: "phone"}, api.Target{Account: "alice"}, "b0", "hi")
	if _, err := e.Service.Edit(ctxT(t), api.EditRequest{By: alicePhone, Conversation: "d:alice:bob", MsgID: bobs.MsgID, ClientMsgID: "e0", Body: big}); api.Code(err) != wire.CodeForbidden {
		t.Fatalf("alice edits bob's message: %v, want forbidden", err)
	}
	second := send(t, e, aliceLaptop, bob, "a2", big) // another device, the same budget
	_, err := e.Service.Send(ctxT(t), api.SendRequest{From: aliceLaptop, To: bob, ClientMsgID: "a3", Body: "hi"})
	refused(t, err)
	_, err = e.Service.Edit(ctxT(t), api.EditRequest{By: alicePhone, Conversation: "d:alice:bob", MsgID: second.MsgID, ClientMsgID: "e1", Body: "fixed"})
	refused(t, err)
	// A service sends as alice regardless.
	if _, err := e.Service.Send(ctxT(t), api.SendRequest{From: alicePhone, To: bob, ClientMsgID: "s1", Body: "from a service", Trusted: true}); err != nil {
		t.Fatalf("a service's send: %v", err)
	}
	// Bob's budget is his own.
	send(t, e, domain.Sender{Account: "bob", Device: "phone"}, api.Target{Account: "alice"}, "b1", big)

	var bodies []string
	for _, m := range history(t, e, "alice", "d:alice:bob") {
		bodies = append(bodies, m.ClientMsgID)
	}
	if strings.Join(bodies, ",") != "a1,b0,a2,s1,b1" {
		t.Errorf("history %v, want a1,b0,a2,s1,b1: nothing refused was appended", bodies)
	}
}

// A negative SendRate turns the budget off.
func TestSendBudgetOff(t *testing.T) {
	e := apitest.New(t, apitest.WithConfig(api.Config{SendRate: -1}))
	big := strings.Repeat("x", domain.MaxBodyBytes)
	for i := range 100 { // 1.7 MB at once, past the default burst
		send(t, e, alicePhone, api.Target{Account: "bob"}, fmt.Sprint("m", i), big)
	}
}
