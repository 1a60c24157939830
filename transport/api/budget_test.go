package api_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

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

// A send the log may still append keeps its cost: once the log says the
// record landed, the budget stays spent; once it says it did not, the
// cost comes back.
func TestSendBudgetOfAnUndecidedSend(t *testing.T) {
	big := strings.Repeat("<", domain.MaxBodyBytes) // the costliest message
	for _, landed := range []bool{true, false} {
		t.Run(fmt.Sprintf("landed %v", landed), func(t *testing.T) {
			e := apitest.New(t, apitest.WithConfig(api.Config{SendTimeout: 100 * time.Millisecond, ReadTimeout: 300 * time.Millisecond,
				SendRate: 1, SendBurst: api.MaxMessageCost}))
			release := e.Log.Hold()
			defer release()
			first := api.SendRequest{From: alicePhone, To: api.Target{Account: "bob"}, ClientMsgID: "c1", Body: big}
			if _, err := e.Service.Send(ctxT(t), first); api.Code(err) != wire.CodeUnavailable {
				t.Fatalf("send past the send timeout: %v, want unavailable", err)
			}
			second := api.SendRequest{From: alicePhone, To: api.Target{Account: "bob"}, ClientMsgID: "c2", Body: big}
			if _, err := e.Service.Send(ctxT(t), second); api.Code(err) != wire.CodeRateLimited {
				t.Fatalf("another send while the first is undecided: %v, want rate_limited", err)
			}
			if !landed {
				e.Log.Fail(errors.New("disk full"))
			}
			release()
			// The log's answer reaches the reservation on its goroutine.
			deadline := time.Now().Add(2 * time.Second)
			for {
				_, err := e.Service.Send(ctxT(t), second)
				switch {
				case landed && api.Code(err) == wire.CodeRateLimited:
					// Still spent (a resend of the first would be
					// refused too). Once it has landed, and the log's
					// answer had time to reach the reservation, it
					// stays spent.
					if len(history(t, e, "bob", "d:alice:bob")) == 1 {
						time.Sleep(200 * time.Millisecond)
						if _, err := e.Service.Send(ctxT(t), second); api.Code(err) != wire.CodeRateLimited {
							t.Fatalf("a send after the first landed: %v, want rate_limited", err)
						}
						return
					}
				case !landed && api.Code(err) != wire.CodeRateLimited:
					e.Log.Fail(nil)
					if _, err := e.Service.Send(ctxT(t), second); err != nil {
						t.Fatalf("a send once the cost came back: %v", err)
					}
					return
				case landed:
					t.Fatalf("a send after the first landed: %v, want rate_limited", err)
				}
				if time.Now().After(deadline) {
					t.Fatalf("the log's answer did not settle the budget: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// Group changes draw on the same budget: a change listing n accounts
// costs GroupChangeCost(n), a change refused by the group's rules costs
// nothing, a service's change is not counted, and a message after the
// budget went to group changes waits like any other.
func TestGroupChangesSpendTheBudget(t *testing.T) {
	if got := api.GroupChangeCost(domain.MaxGroupMembers); got > api.MaxMessageCost {
		t.Fatalf("the largest group change costs %d, more than the smallest burst %d", got, api.MaxMessageCost)
	}
	// The smallest burst holds three changes of 499 accounts (and less than
	// a message more); a byte a second refills nothing within the test.
	if 3*api.GroupChangeCost(499)+api.MessageCost("hi") <= api.MaxMessageCost {
		t.Fatal("the test's changes fit the budget with a message to spare")
	}
	e := apitest.New(t, apitest.WithConfig(api.Config{SendRate: 1, SendBurst: api.MaxMessageCost}))
	alice := api.Actor{Account: "alice"}
	var members []string // 499 of them
	for i := range 499 {
		members = append(members, fmt.Sprint("m", i))
	}
	ctx := ctxT(t)
	g, err := e.Service.CreateGroup(ctx, alice, "one", members)
	if err != nil {
		t.Fatal(err)
	}
	// Refused by the rules: bob is not a member, and may not add.
	if _, err := e.Service.AddMembers(ctx, api.Actor{Account: "bob"}, string(g.ID()), members); api.Code(err) != wire.CodeNotMember {
		t.Fatalf("a non-member adds: %v, want not_member", err)
	}
	// alice may not remove herself, the owner: refused, nothing spent.
	for range 5 {
		if _, err := e.Service.RemoveMembers(ctx, alice, string(g.ID()), []string{"alice"}); api.Code(err) != wire.CodeForbidden {
			t.Fatalf("the owner leaves: %v, want forbidden", err)
		}
	}
	if _, err := e.Service.CreateGroup(ctx, alice, "two", members); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Service.RemoveMembers(ctx, alice, string(g.ID()), members); err != nil {
		t.Fatal(err)
	}
	_, err = e.Service.CreateGroup(ctx, alice, "four", members)
	var limit *api.LimitError
	if api.Code(err) != wire.CodeRateLimited || !errors.As(err, &limit) || api.RetryAfter(err) <= 0 || !strings.Contains(err.Error(), "group change") {
		t.Fatalf("a fourth change: %v, want rate_limited with a wait", err)
	}
	if _, err := e.Service.Send(ctx, api.SendRequest{From: alicePhone, To: api.Target{Account: "bob"}, ClientMsgID: "c1", Body: "hi"}); api.Code(err) != wire.CodeRateLimited {
		t.Fatalf("a message after the budget went to group changes: %v, want rate_limited", err)
	}
	if _, err := e.Service.CreateGroup(ctx, api.Actor{Account: "alice", Trusted: true}, "by a service", members); err != nil {
		t.Fatalf("a service's change: %v", err)
	}
	if _, err := e.Service.CreateGroup(ctx, api.Actor{Account: "bob"}, "bob's", members); err != nil {
		t.Fatalf("bob's budget is his own: %v", err)
	}
	groups, _, err := e.Service.GroupsPage(ctx, api.Actor{Account: "alice"}, "")
	if err != nil || len(groups) != 3 {
		t.Fatalf("alice's groups: %d, %v; want one, two and the service's", len(groups), err)
	}
}

// A mute or an unmute is a durable write: each costs SendCost from the
// account's send budget, a refusal for what it asks costs nothing (and
// is refused for it even when the budget is spent), and a service's is
// not counted.
func TestMutesSpendTheBudget(t *testing.T) {
	const burst = 100 * api.SendCost // at least MaxMessageCost
	e := apitest.New(t, apitest.WithConfig(api.Config{SendRate: 1, SendBurst: burst}))
	send(t, e, alicePhone, api.Target{Account: "bob"}, "m1", "hi")
	ctx := ctxT(t)
	alice := api.Actor{Account: "alice"}
	// The send took its cost: what is left is less than 100 mutes.
	done := 0
	for ; done < 200; done++ {
		var err error
		if done%2 == 0 {
			_, err = e.Service.Mute(ctx, alice, "d:alice:bob", 0)
		} else {
			_, err = e.Service.Unmute(ctx, alice, "d:alice:bob")
		}
		if api.Code(err) == wire.CodeRateLimited {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if done < 90 || done >= 100 {
		t.Fatalf("%d mutes and unmutes before rate_limited, want what %d bytes hold less the send's", done, burst)
	}
	if _, err := e.Service.Mute(ctx, alice, "d:bob:carol", 0); api.Code(err) != wire.CodeForbidden {
		t.Fatalf("a mute of someone else's conversation with the budget spent: %v, want forbidden", err)
	}
	if _, err := e.Service.Mute(ctx, api.Actor{Account: "alice", Trusted: true}, "d:alice:bob", 0); err != nil {
		t.Fatalf("a service's mute as alice: %v", err)
	}
	if _, err := e.Service.Mute(ctx, api.Actor{Account: "bob"}, "d:alice:bob", 0); err != nil {
		t.Fatalf("another account's mute: %v", err)
	}
}

// A conversation list is charged once it knows its length, so the lists
// of one account run one at a time: lists sent side by side pass the
// budget no more often than lists sent one after another (each of 250
// conversations takes 1 + 2 reads: 10 → 7 → 4 → 1 → refused).
func TestConversationListsOfAnAccountRunOneAtATime(t *testing.T) {
	e := apitest.New(t, apitest.WithConfig(api.Config{ReadRate: 0.001, ReadBurst: 10}))
	for i := range 250 {
		send(t, e, alicePhone, api.Target{Account: fmt.Sprint("peer", i)}, fmt.Sprint("m", i), "hi")
	}
	var mu sync.Mutex
	answered, refused := 0, 0
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			_, _, err := e.Service.Conversations(ctxT(t), api.Actor{Account: "alice"}, api.ConversationsQuery{})
			mu.Lock()
			defer mu.Unlock()
			var limit *api.LimitError
			switch {
			case err == nil:
				answered++
			case errors.As(err, &limit):
				refused++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if answered != 4 || refused != 6 {
		t.Errorf("10 lists side by side: %d answered, %d refused; want 4 and 6", answered, refused)
	}
}

// Groups without a message cost a list a read for each 1000: anyone may
// add an account to groups, and an empty one costs the list about a tenth
// of a conversation. An account put in 2,000 empty groups by others pays
// 1 + 2 reads a list (10 → 7 → 4 → 1 → refused), not 1 + 20.
func TestEmptyGroupsCostAListLittle(t *testing.T) {
	e := apitest.New(t, apitest.WithConfig(api.Config{ReadRate: 0.001, ReadBurst: 10}))
	for range 2000 {
		if _, err := e.Service.CreateGroup(ctxT(t), api.Actor{Account: "mallory", Trusted: true}, "", []string{"vic"}); err != nil {
			t.Fatal(err)
		}
	}
	lists := 0
	for ; lists <= 10; lists++ {
		_, _, err := e.Service.Conversations(ctxT(t), api.Actor{Account: "vic"}, api.ConversationsQuery{})
		var limit *api.LimitError
		if errors.As(err, &limit) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if lists != 4 {
		t.Errorf("an account in 2,000 empty groups listed %d times on a burst of 10, want 4", lists)
	}
}

// A read that moves the cursor is a durable write, and costs SendCost of
// the reader's send budget; one that moves nothing costs nothing and is
// answered with the budget spent; a service's read is not counted.
func TestReadsSpendTheBudget(t *testing.T) {
	const burst = 100 * api.SendCost // at least MaxMessageCost
	e := apitest.New(t, apitest.WithConfig(api.Config{SendRate: 1, SendBurst: burst}))
	ctx := ctxT(t)
	var acks []api.Ack
	for i := range 110 {
		ack, err := e.Service.Send(ctx, api.SendRequest{From: alicePhone, To: api.Target{Account: "bob"},
			ClientMsgID: fmt.Sprint("m", i), Body: "hi", Trusted: true})
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, ack)
	}
	bob := domain.Sender{Account: "bob", Device: "phone"}
	read := func(by domain.Sender, i int, trusted bool) error {
		_, err := e.Service.Read(ctx, api.ReadRequest{By: by, Conversation: "d:alice:bob", MsgID: acks[i].MsgID, Trusted: trusted})
		return err
	}
	done := 0
	for ; done < len(acks); done++ {
		err := read(bob, done, false)
		if api.Code(err) == wire.CodeRateLimited {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if done != 100 {
		t.Fatalf("%d reads moved the cursor before rate_limited, want the %d that %d bytes hold", done, burst/api.SendCost, burst)
	}
	if err := read(bob, done-1, false); err != nil {
		t.Fatalf("a read that moves nothing, with the budget spent: %v", err)
	}
	if err := read(bob, done, true); err != nil {
		t.Fatalf("a service's read as bob: %v", err)
	}
}

// A typing signal costs TypingCost for each account it is pushed to: an
// account typing in conversation after conversation is refused once
// those pushes pass its budget, and a signal refused within the interval
// costs nothing.
func TestTypingSpendsTheBudget(t *testing.T) {
	const burst = 100 * api.SendCost
	e := apitest.New(t, apitest.WithConfig(api.Config{SendRate: 1, SendBurst: burst}))
	ctx := ctxT(t)
	if _, _, err := e.Service.Typing(ctx, "alice", "d:alice:bob"); err != nil {
		t.Fatal(err)
	}
	for range 50 { // within the interval: refused, and free
		if _, _, err := e.Service.Typing(ctx, "alice", "d:alice:bob"); api.Code(err) != wire.CodeRateLimited || api.RetryAfter(err) <= 0 {
			t.Fatalf("a second signal within the interval: %v, want rate_limited", err)
		}
	}
	done := 1
	for ; done < 2*burst/api.TypingCost; done++ {
		_, _, err := e.Service.Typing(ctx, "alice", fmt.Sprintf("d:alice:peer%d", done))
		if api.Code(err) == wire.CodeRateLimited {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if done != burst/api.TypingCost {
		t.Fatalf("%d typing signals before rate_limited, want the %d that %d bytes hold", done, burst/api.TypingCost, burst)
	}
	if _, _, err := e.Service.Typing(ctx, "bob", "d:alice:bob"); err != nil {
		t.Fatalf("another account's typing: %v", err)
	}
}

// A page of groups takes one read, and once answered one more for each
// GroupsBytesPerRead it lists: an account put in large groups pages
// through them no faster than their bytes allow.
func TestGroupsPagesCostByTheirBytes(t *testing.T) {
	e := apitest.New(t, apitest.WithConfig(api.Config{ReadRate: 0.001, ReadBurst: 20}))
	ctx := ctxT(t)
	members := make([]string, 498)
	for i := range members {
		members[i] = fmt.Sprintf("member-%057d", i) // 64 bytes
	}
	for i := range 10 {
		if _, err := e.Service.CreateGroup(ctx, api.Actor{Account: "alice", Trusted: true}, fmt.Sprint("big", i), members); err != nil {
			t.Fatal(err)
		}
	}
	gs, more, err := e.Service.GroupsPage(ctx, api.Actor{Account: "alice"}, "")
	if err != nil || len(gs) != 10 || more {
		t.Fatalf("the first page: %d groups, more %v, %v", len(gs), more, err)
	}
	// Each page lists ~335 KB: 1 + 5 reads. 20 → 14 → 8 → 2 → -4.
	answered := 1
	for ; answered < 20; answered++ {
		_, _, err := e.Service.GroupsPage(ctx, api.Actor{Account: "alice"}, "")
		if api.Code(err) == wire.CodeRateLimited {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if answered != 4 {
		t.Fatalf("%d pages answered before rate_limited, want 4", answered)
	}
	if _, _, err := e.Service.GroupsPage(ctx, api.Actor{Account: "alice", Trusted: true}, ""); err != nil {
		t.Fatalf("a service's page: %v", err)
	}
}
