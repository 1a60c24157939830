package api_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/idempotency"
	"github.com/parley-chat/parley/projections/cache"
	"github.com/parley-chat/parley/projections/store"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/api/apitest"
	"github.com/parley-chat/parley/transport/wire"
)

var (
	alicePhone  = domain.Sender{Account: "alice", Device: "phone"}
	aliceLaptop = domain.Sender{Account: "alice", Device: "laptop"}
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func send(t *testing.T, e *apitest.Env, from domain.Sender, to api.Target, id, body string) api.Ack {
	t.Helper()
	ack, err := e.Service.Send(ctxT(t), api.SendRequest{From: from, To: to, ClientMsgID: id, Body: body})
	if err != nil {
		t.Fatalf("send %s: %v", id, err)
	}
	return ack
}

func history(t *testing.T, e *apitest.Env, who domain.AccountID, conv string) []domain.Message {
	t.Helper()
	var out []domain.Message
	var last domain.MsgID
	for {
		res, err := e.Service.Sync(ctxT(t), api.Actor{Account: who}, conv, time.Time{}, last, 200, false)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res.Messages...)
		last = res.NextMsgID
		if !res.More {
			return out
		}
	}
}

func TestSendAcksPushesAndStores(t *testing.T) {
	e := apitest.New(t)
	ack := send(t, e, alicePhone, api.Target{Account: "bob"}, "c1", "hi bob")
	if ack.Conversation.String() != "d:alice:bob" || ack.MsgID == 0 || ack.Duplicate {
		t.Fatalf("ack %+v", ack)
	}
	select {
	case p := <-e.Pushes:
		if p.Message.MsgID != ack.MsgID || p.Message.Body != "hi bob" || len(p.Recipients) != 2 {
			t.Fatalf("push %+v", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no push")
	}
	if got := history(t, e, "bob", "d:alice:bob"); len(got) != 1 || got[0].MsgID != ack.MsgID {
		t.Fatalf("history %+v", got)
	}
}

// A used client message id gives the original ack, whatever the request
// now says and whichever device of the account asks: from the in-process
// record while it is recent, and from the store once that is forgotten.
// With CompleteAfterAck the ack goes out before the reservation is
// completed: a resend right after it must wait for the completion, and
// get the same.
func TestClientMsgIDMakesOneMessage(t *testing.T) {
	for _, afterAck := range []bool{false, true} {
		t.Run(fmt.Sprintf("complete after ack %v", afterAck), func(t *testing.T) {
			testClientMsgIDMakesOneMessage(t, afterAck)
		})
	}
}

func testClientMsgIDMakesOneMessage(t *testing.T, afterAck bool) {
	e := apitest.New(t, apitest.WithConfig(api.Config{CompleteAfterAck: afterAck}))
	first := send(t, e, alicePhone, api.Target{Account: "bob"}, "c1", "hi")
	tests := []struct {
		name  string
		sweep bool
		req   api.SendRequest
	}{
		{"plain resend", false, api.SendRequest{From: alicePhone, To: api.Target{Account: "bob"}, ClientMsgID: "c1", Body: "hi"}},
		{"retry to another recipient", false, api.SendRequest{From: alicePhone, To: api.Target{Account: "carol"}, ClientMsgID: "c1", Body: "other", Retry: true}},
		{"from another device", false, api.SendRequest{From: aliceLaptop, To: api.Target{Account: "bob"}, ClientMsgID: "c1", Body: "hi"}},
		{"found in the store after the recent record is forgotten", true, api.SendRequest{From: aliceLaptop, To: api.Target{Account: "alice"}, ClientMsgID: "c1", Body: "x"}},
		{"retry found in the store", true, api.SendRequest{From: alicePhone, To: api.Target{Account: "bob"}, ClientMsgID: "c1", Body: "hi", Retry: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.sweep {
				// Wait until the store holds the message, then forget the
				// in-process record as housekeeping would.
				ends, _ := e.Log.EndOffsets(context.Background())
				if err := e.StoreProgress.WaitForAll(ctxT(t), ends); err != nil {
					t.Fatal(err)
				}
				e.Service.WaitForCompletions()
				e.Service.SweepIdempotency(0)
			}
			ack, err := e.Service.Send(ctxT(t), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if ack.MsgID != first.MsgID || ack.MessageID != first.MessageID || ack.Conversation != first.Conversation || !ack.Duplicate {
				t.Fatalf("ack %+v, want the original %+v as a duplicate", ack, first)
			}
		})
	}
	if got := history(t, e, "bob", "d:alice:bob"); len(got) != 1 {
		t.Fatalf("%d messages in the history, want 1", len(got))
	}
	for _, conv := range []string{"d:alice:carol", "d:alice:alice"} {
		if got := history(t, e, "alice", conv); len(got) != 0 {
			t.Errorf("%s has %d messages", conv, len(got))
		}
	}
}

// With the store not applying anything, every resend of a used client
// message id — with and without retry, to another recipient, from another
// device — gets the original ack from the reservation, and nothing else
// reaches the log.
func TestClientMsgIDHoldsWhileTheStoreLags(t *testing.T) {
	for _, afterAck := range []bool{false, true} {
		t.Run(fmt.Sprintf("complete after ack %v", afterAck), func(t *testing.T) {
			testClientMsgIDHoldsWhileTheStoreLags(t, afterAck)
		})
	}
}

func testClientMsgIDHoldsWhileTheStoreLags(t *testing.T, afterAck bool) {
	e := apitest.New(t, apitest.Without(store.Name), apitest.WithConfig(api.Config{CompleteAfterAck: afterAck}))
	first := send(t, e, alicePhone, api.Target{Account: "bob"}, "c1", "hi")
	ends, _ := e.Log.EndOffsets(context.Background())
	for _, retry := range []bool{false, true} {
		for _, to := range []string{"bob", "carol", "alice"} {
			for _, from := range []domain.Sender{alicePhone, aliceLaptop} {
				ack, err := e.Service.Send(ctxT(t), api.SendRequest{From: from, To: api.Target{Account: to}, ClientMsgID: "c1", Body: "again", Retry: retry})
				if err != nil {
					t.Fatalf("resend retry=%v to %s from %s: %v", retry, to, from.Device, err)
				}
				if ack.MsgID != first.MsgID || ack.MessageID != first.MessageID || ack.Conversation != first.Conversation || !ack.ServerTime.Equal(first.ServerTime) || !ack.Duplicate {
					t.Fatalf("resend retry=%v to %s from %s: %+v, want the original %+v", retry, to, from.Device, ack, first)
				}
			}
		}
	}
	if after, _ := e.Log.EndOffsets(context.Background()); fmt.Sprint(after) != fmt.Sprint(ends) {
		t.Fatalf("resends appended: ends %v, then %v", ends, after)
	}
}

// A resend while the first attempt is still appending waits for it and gets
// its ack; past the read timeout it is unavailable, and a later resend
// still gets the one message.
func TestResendWaitsForTheAttemptUnderWay(t *testing.T) {
	e := apitest.New(t, apitest.WithConfig(api.Config{ReadTimeout: 300 * time.Millisecond}))
	release := e.Log.Hold()
	defer release()
	type result struct {
		ack api.Ack
		err error
	}
	firstDone := make(chan result, 1)
	go func() {
		ack, err := e.Service.Send(ctxT(t), api.SendRequest{From: alicePhone, To: api.Target{Account: "bob"}, ClientMsgID: "c1", Body: "hi"})
		firstDone <- result{ack, err}
	}()
	time.Sleep(50 * time.Millisecond) // the first attempt holds the reservation
	_, err := e.Service.Send(ctxT(t), api.SendRequest{From: aliceLaptop, To: api.Target{Account: "carol"}, ClientMsgID: "c1", Body: "x", Retry: true})
	if api.Code(err) != wire.CodeUnavailable {
		t.Fatalf("resend while the first attempt is held past the bound: %v, want unavailable", err)
	}
	waiting := make(chan result, 1)
	go func() {
		ack, err := e.Service.Send(ctxT(t), api.SendRequest{From: alicePhone, To: api.Target{Account: "bob"}, ClientMsgID: "c1", Body: "hi"})
		waiting <- result{ack, err}
	}()
	time.Sleep(50 * time.Millisecond)
	release()
	first := <-firstDone
	if first.err != nil || first.ack.Duplicate {
		t.Fatalf("first attempt: %+v %v", first.ack, first.err)
	}
	for name, r := range map[string]result{"waiting resend": <-waiting, "later retry": func() result {
		ack, err := e.Service.Send(ctxT(t), api.SendRequest{From: aliceLaptop, To: api.Target{Account: "carol"}, ClientMsgID: "c1", Body: "x", Retry: true})
		return result{ack, err}
	}()} {
		if r.err != nil || r.ack.MsgID != first.ack.MsgID || r.ack.MessageID != first.ack.MessageID || !r.ack.Duplicate {
			t.Errorf("%s: %+v %v, want the original %+v", name, r.ack, r.err, first.ack)
		}
	}
	if got := history(t, e, "bob", "d:alice:bob"); len(got) != 1 {
		t.Fatalf("%d messages in the history, want 1", len(got))
	}
	if got := history(t, e, "carol", "d:alice:carol"); len(got) != 0 {
		t.Fatalf("%d messages to carol, want none", len(got))
	}
}

// A send whose append outlives the send timeout is unavailable, but its
// record may still land: until the log says, its reservation stays with
// it, so a resend waits (and is unavailable past the read timeout)
// instead of appending a second record. Once the record lands, every
// resend gets its ack; if it never lands, the next resend appends.
func TestLateAppendKeepsItsReservation(t *testing.T) {
	for _, landed := range []bool{true, false} {
		t.Run(fmt.Sprintf("landed %v", landed), func(t *testing.T) {
			e := apitest.New(t, apitest.WithConfig(api.Config{SendTimeout: 100 * time.Millisecond, ReadTimeout: 300 * time.Millisecond}))
			release := e.Log.Hold()
			defer release()
			req := api.SendRequest{From: alicePhone, To: api.Target{Account: "bob"}, ClientMsgID: "c1", Body: "hi"}
			if _, err := e.Service.Send(ctxT(t), req); api.Code(err) != wire.CodeUnavailable {
				t.Fatalf("send past the send timeout: %v, want unavailable", err)
			}
			retry := req
			retry.Retry = true
			for _, r := range []api.SendRequest{req, retry} {
				if _, err := e.Service.Send(ctxT(t), r); api.Code(err) != wire.CodeUnavailable {
					t.Fatalf("resend (retry %v) while the first append is undecided: %v, want unavailable", r.Retry, err)
				}
			}
			if !landed {
				e.Log.Fail(errors.New("disk full"))
			}
			release()
			if !landed {
				// The failure reaches the reservation on the log's
				// goroutine: a resend finds it pending until then, and
				// then makes an attempt of its own, which reaches the
				// failing log — well before the lease would lapse.
				deadline := time.Now().Add(2 * time.Second)
				for {
					_, err := e.Service.Send(ctxT(t), retry)
					if err != nil && strings.Contains(err.Error(), "disk full") {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("resend after the late append failed: %v, want an attempt of its own", err)
					}
					time.Sleep(20 * time.Millisecond)
				}
				e.Log.Fail(nil)
			}
			ack, err := e.Service.Send(ctxT(t), retry)
			if err != nil {
				t.Fatalf("resend once the log decided: %v", err)
			}
			if ack.Duplicate != landed {
				t.Fatalf("resend once the log decided: %+v, want duplicate %v", ack, landed)
			}
			got := history(t, e, "bob", "d:alice:bob")
			if len(got) != 1 || got[0].MsgID != ack.MsgID || got[0].ID != ack.MessageID {
				t.Fatalf("history %+v, want the one message of ack %+v", got, ack)
			}
		})
	}
}

// Every write of a client waits for the log at most SendTimeout, not
// until the broker answers: on a stalled log an edit, a delete, a read
// mark and a group change answer unavailable in time, as a send does.
func TestWritesWaitForTheLogAtMostTheSendTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	e := apitest.New(t, apitest.WithConfig(api.Config{SendTimeout: timeout}))
	bob := domain.Sender{Account: "bob", Device: "phone"}
	ack := send(t, e, alicePhone, api.Target{Account: "bob"}, "c1", "hi")
	conv := ack.Conversation.String()
	if got := history(t, e, "bob", conv); len(got) != 1 {
		t.Fatalf("history %+v", got)
	}
	release := e.Log.Hold()
	defer release()
	for _, w := range []struct {
		name  string
		write func(ctx context.Context) error
	}{
		{"send", func(ctx context.Context) error {
			_, err := e.Service.Send(ctx, api.SendRequest{From: alicePhone, To: api.Target{Account: "bob"}, ClientMsgID: "c2", Body: "x"})
			return err
		}},
		{"edit", func(ctx context.Context) error {
			_, err := e.Service.Edit(ctx, api.EditRequest{By: alicePhone, Conversation: conv, MsgID: ack.MsgID, ClientMsgID: "e1", Body: "hello"})
			return err
		}},
		{"delete", func(ctx context.Context) error {
			_, err := e.Service.Delete(ctx, alicePhone, conv, ack.MsgID, api.ViaSocket)
			return err
		}},
		{"read", func(ctx context.Context) error {
			_, err := e.Service.Read(ctx, api.ReadRequest{By: bob, Conversation: conv, MsgID: ack.MsgID, Via: api.ViaSocket})
			return err
		}},
		{"group create", func(ctx context.Context) error {
			_, err := e.Service.CreateGroup(ctx, api.Actor{Account: "alice"}, "team", []string{"bob"})
			return err
		}},
	} {
		start := time.Now()
		err := w.write(ctxT(t))
		took := time.Since(start)
		if api.Code(err) != wire.CodeUnavailable || took > timeout+time.Second {
			t.Errorf("%s on a stalled log: %v after %v, want unavailable after about %v", w.name, err, took.Round(time.Millisecond), timeout)
		}
	}
}

// Sends whose records the log may still append are bounded: past the
// bound a send is refused before it appends anything, and goes through
// once the log has settled the others.
func TestUndecidedSendsAreBounded(t *testing.T) {
	e := apitest.New(t, apitest.WithConfig(api.Config{SendTimeout: 50 * time.Millisecond}))
	e.Service.SetMaxUndecided(2)
	release := e.Log.Hold()
	defer release()
	req := func(id string) api.SendRequest {
		return api.SendRequest{From: alicePhone, To: api.Target{Account: "bob"}, ClientMsgID: id, Body: id}
	}
	for _, id := range []string{"c1", "c2"} {
		if _, err := e.Service.Send(ctxT(t), req(id)); api.Code(err) != wire.CodeUnavailable {
			t.Fatalf("send %s on a stalled log: %v, want unavailable", id, err)
		}
	}
	_, err := e.Service.Send(ctxT(t), req("c3"))
	if api.Code(err) != wire.CodeUnavailable || !strings.Contains(err.Error(), "wait for the log") {
		t.Fatalf("a third send past the bound: %v, want unavailable for the sends waiting", err)
	}
	release()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ack, err := e.Service.Send(ctxT(t), req("c3"))
		if err == nil {
			if ack.Duplicate {
				t.Fatalf("c3 after the log settled: %+v, want a new message (the refused one appended nothing)", ack)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("c3 after the log settled: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var bodies []string
	for _, m := range history(t, e, "bob", "d:alice:bob") {
		bodies = append(bodies, m.Body)
	}
	slices.Sort(bodies)
	if fmt.Sprint(bodies) != "[c1 c2 c3]" {
		t.Fatalf("history %v, want c1, c2 and c3 once each", bodies)
	}
}

// A service that stops while an append is undecided does not wait for
// the log: it lets the reservation go, to lapse after its lease.
func TestStopDoesNotWaitForALateAppend(t *testing.T) {
	e := apitest.New(t, apitest.WithConfig(api.Config{SendTimeout: 50 * time.Millisecond}))
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		e.Service.Run(ctx)
		close(stopped)
	}()
	release := e.Log.Hold()
	defer release()
	if _, err := e.Service.Send(ctxT(t), api.SendRequest{From: alicePhone, To: api.Target{Account: "bob"}, ClientMsgID: "c1", Body: "hi"}); api.Code(err) != wire.CodeUnavailable {
		t.Fatalf("send past the send timeout: %v, want unavailable", err)
	}
	if undecided, leases := e.Service.Waiting(); undecided != 1 || leases != 1 {
		t.Fatalf("before the stop: %d undecided, %d leases; want the send's", undecided, leases)
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		t.Fatal("the service waits for an undecided append to stop")
	}
	if undecided, leases := e.Service.Waiting(); undecided != 0 || leases != 0 {
		t.Fatalf("after the stop: %d undecided, %d leases renewed; want none", undecided, leases)
	}
}

// A late append that lands completes its reservation with the ack the
// send would have had: a resend gets it from the reservation, without
// the store (held back here, so a resend that had to look there would
// wait for it and be unavailable).
func TestLateAppendCompletesItsReservation(t *testing.T) {
	e := apitest.New(t, apitest.Without(store.Name), apitest.WithConfig(api.Config{SendTimeout: 50 * time.Millisecond, ReadTimeout: 200 * time.Millisecond}))
	release := e.Log.Hold()
	defer release()
	req := api.SendRequest{From: alicePhone, To: api.Target{Account: "bob"}, ClientMsgID: "c1", Body: "hi", Retry: true}
	if _, err := e.Service.Send(ctxT(t), req); api.Code(err) != wire.CodeUnavailable {
		t.Fatalf("send past the send timeout: %v, want unavailable", err)
	}
	release()
	deadline := time.Now().Add(2 * time.Second)
	for {
		ack, err := e.Service.Send(ctxT(t), req)
		if err == nil {
			if !ack.Duplicate || ack.MsgID == 0 {
				t.Fatalf("resend once the record landed: %+v, want its ack", ack)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resend once the record landed: %v, want the ack from the reservation", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ends, _ := e.Log.EndOffsets(context.Background())
	var records int64
	for _, end := range ends {
		records += end
	}
	if records != 1 {
		t.Fatalf("%d records in the log, want the one", records)
	}
}

// A log that refuses appends fails the send as unavailable, with nothing
// stored; the same client message id goes through once the log is back.
func TestUnwritableLogIsUnavailable(t *testing.T) {
	e := apitest.New(t)
	e.Log.Fail(errors.New("disk full"))
	_, err := e.Service.Send(ctxT(t), api.SendRequest{From: alicePhone, To: api.Target{Account: "bob"}, ClientMsgID: "c1", Body: "x"})
	if api.Code(err) != wire.CodeUnavailable {
		t.Fatalf("send to a failing log: %v, want unavailable", err)
	}
	e.Log.Fail(nil)
	if ack := send(t, e, alicePhone, api.Target{Account: "bob"}, "c1", "x"); ack.Duplicate {
		t.Fatalf("the retry is a duplicate of a send that never landed: %+v", ack)
	}
}

// The cache answers a recent cursor when it covers the range; the store
// answers an old or absent one, and any range the cache cannot vouch for.
func TestSyncSources(t *testing.T) {
	tests := []struct {
		name     string
		opts     []apitest.Option
		lastTime time.Duration // before now; 0: none
		want     string
	}{
		{"no lastTime reads the store", nil, 0, api.SourceStore},
		{"a recent lastTime reads the cache", nil, time.Hour, api.SourceCache},
		{"a lastTime of a week ago reads the store", nil, cache.Retention, api.SourceStore},
		{"a cache that is behind is not asked", []apitest.Option{apitest.Without(cache.Name)}, time.Hour, api.SourceStore},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := apitest.New(t, tc.opts...)
			ack := send(t, e, alicePhone, api.Target{Account: "bob"}, "c1", "x")
			var lt time.Time
			if tc.lastTime > 0 {
				lt = time.Now().Add(-tc.lastTime)
			}
			res, err := e.Service.Sync(ctxT(t), api.Actor{Account: "bob"}, "d:alice:bob", lt, 0, 10, false)
			if err != nil {
				t.Fatal(err)
			}
			if res.Source != tc.want || len(res.Messages) != 1 || res.Messages[0].MsgID != ack.MsgID {
				t.Fatalf("source %s with %d messages, want %s with the message", res.Source, len(res.Messages), tc.want)
			}
		})
	}
}

// A store that does not catch up makes a sync unavailable after the read
// timeout, and a caller that gives up earlier is let go at once.
func TestLaggingStore(t *testing.T) {
	e := apitest.New(t, apitest.Without(store.Name), apitest.WithConfig(api.Config{ReadTimeout: 100 * time.Millisecond}))
	send(t, e, alicePhone, api.Target{Account: "bob"}, "c1", "x")
	_, err := e.Service.Sync(ctxT(t), api.Actor{Account: "bob"}, "d:alice:bob", time.Time{}, 0, 10, false)
	if api.Code(err) != wire.CodeUnavailable {
		t.Fatalf("sync of a lagging store: %v, want unavailable", err)
	}
	e2 := apitest.New(t, apitest.Without(store.Name))
	send(t, e2, alicePhone, api.Target{Account: "bob"}, "c1", "x")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = e2.Service.Sync(ctx, api.Actor{Account: "bob"}, "d:alice:bob", time.Time{}, 0, 10, false)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("a cancelled sync returned %v after %v", err, time.Since(start))
	}
}

func TestSyncPaging(t *testing.T) {
	e := apitest.New(t)
	for i := 0; i < 7; i++ {
		send(t, e, alicePhone, api.Target{Account: "bob"}, fmt.Sprint("c", i), fmt.Sprint(i))
	}
	var last domain.MsgID
	pages := 0
	var got []string
	for {
		res, err := e.Service.Sync(ctxT(t), api.Actor{Account: "alice"}, "d:alice:bob", time.Time{}, last, 3, false)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, m := range res.Messages {
			got = append(got, m.Body)
		}
		last = res.NextMsgID
		if !res.More {
			break
		}
	}
	if pages != 3 || fmt.Sprint(got) != "[0 1 2 3 4 5 6]" {
		t.Fatalf("%d pages: %v", pages, got)
	}
}

func TestGroupRules(t *testing.T) {
	e := apitest.New(t)
	ctx := ctxT(t)
	g, err := e.Service.CreateGroup(ctx, api.Actor{Account: "alice"}, "team", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	gid := string(g.ID())
	tests := []struct {
		name string
		do   func() error
		want wire.Code
	}{
		{"a member sends", func() error {
			_, err := e.Service.Send(ctx, api.SendRequest{From: domain.Sender{Account: "bob", Device: "d"}, To: api.Target{Group: gid}, ClientMsgID: "g1"})
			return err
		}, ""},
		{"a non-member cannot send", func() error {
			_, err := e.Service.Send(ctx, api.SendRequest{From: domain.Sender{Account: "mallory", Device: "d"}, To: api.Target{Group: gid}, ClientMsgID: "g2"})
			return err
		}, wire.CodeNotMember},
		{"no such group", func() error {
			_, err := e.Service.Send(ctx, api.SendRequest{From: alicePhone, To: api.Target{Group: "nogroup"}, ClientMsgID: "g3"})
			return err
		}, wire.CodeNotFound},
		{"a non-member cannot sync", func() error {
			_, err := e.Service.Sync(ctx, api.Actor{Account: "mallory"}, "g:"+gid, time.Time{}, 0, 10, false)
			return err
		}, wire.CodeNotMember},
		{"a member may not remove the owner", func() error {
			_, err := e.Service.RemoveMembers(ctx, api.Actor{Account: "bob"}, gid, []string{"alice"})
			return err
		}, wire.CodeForbidden},
		{"a member leaves", func() error {
			_, err := e.Service.RemoveMembers(ctx, api.Actor{Account: "bob"}, gid, []string{"bob"})
			return err
		}, ""},
		{"the one who left cannot send", func() error {
			_, err := e.Service.Send(ctx, api.SendRequest{From: domain.Sender{Account: "bob", Device: "d"}, To: api.Target{Group: gid}, ClientMsgID: "g4"})
			return err
		}, wire.CodeNotMember},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := api.Code(tc.do()); got != tc.want {
				t.Fatalf("code %q, want %q", got, tc.want)
			}
		})
	}
	list, _, err := e.Service.Conversations(ctx, api.Actor{Account: "alice"}, api.ConversationsQuery{})
	if err != nil || len(list) != 1 || list[0].Conversation.String() != "g:"+gid {
		t.Fatalf("alice's conversations: %+v %v", list, err)
	}
}

// A sync from a cursor below what the history retention removed says up
// to where the history is gone, and pages on from there; from the floor
// on it says nothing.
func TestSyncReportsWhatTheRetentionRemoved(t *testing.T) {
	e := apitest.New(t)
	var acks []api.Ack
	for i := range 5 {
		acks = append(acks, send(t, e, alicePhone, api.Target{Account: "bob"}, fmt.Sprint("c", i), "x"))
	}
	conv := domain.DirectConversation("alice", "bob")
	// A sync waits for the store to hold every message; then remove.
	if res, err := e.Service.Sync(ctxT(t), api.Actor{Account: "bob"}, conv.String(), time.Time{}, 0, 10, false); err != nil || len(res.Messages) != 5 {
		t.Fatalf("sync before the retention: %d messages, %v", len(res.Messages), err)
	}
	floor := acks[2].MsgID
	if _, err := e.Store.Remove(ctxT(t), store.Floor{Conversation: conv, Through: floor}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		after domain.MsgID
		gone  domain.MsgID
	}{
		{"from the start", 0, floor},
		{"from inside the gone range", acks[1].MsgID, floor},
		{"from the floor", floor, 0},
		{"from after the floor", acks[3].MsgID, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.Service.Sync(ctxT(t), api.Actor{Account: "bob"}, conv.String(), time.Time{}, tc.after, 10, false)
			if err != nil {
				t.Fatal(err)
			}
			if res.GoneThrough != tc.gone || len(res.Messages) == 0 || res.Messages[0].MsgID <= max(tc.after, floor) {
				t.Errorf("goneThrough %d, first of %d messages %v; want goneThrough %d and messages after %d",
					res.GoneThrough, len(res.Messages), res.Messages, tc.gone, max(tc.after, floor))
			}
			if res.NextMsgID != acks[4].MsgID {
				t.Errorf("next msgid %d, want %d", res.NextMsgID, acks[4].MsgID)
			}
		})
	}
}

// An edit's key is recorded as a send's too before the edit is answered:
// a send with it gets the edit's ack at once, even while the history has
// not applied the edit yet (the send waits only for its own conversation's
// partition, and the edit may lie in another).
func TestEditClaimsItsKeyForSends(t *testing.T) {
	res := idempotency.NewMemory(nil)
	e := apitest.New(t, apitest.WithConfig(api.Config{Reservations: res}))
	m := send(t, e, alicePhone, api.Target{Account: "bob"}, "m1", "one")
	edit, err := e.Service.Edit(ctxT(t), api.EditRequest{By: alicePhone, Conversation: m.Conversation.String(), MsgID: m.MsgID, ClientMsgID: "e1", Body: "edited"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := res.Reserve(ctxT(t), idempotency.Key{Account: "alice", ClientMsgID: "e1"}, 0, time.Second, time.Hour)
	if err != nil || got.State != idempotency.Done || got.Ack.MsgID != edit.MsgID || !got.Ack.ServerTime.Equal(edit.ServerTime) {
		t.Fatalf("the edit's key as a send's: %+v, %v; want the edit's ack %+v", got, err, edit)
	}
	again, err := e.Service.Send(ctxT(t), api.SendRequest{From: aliceLaptop, To: api.Target{Account: "carol"}, ClientMsgID: "e1", Body: "to carol"})
	if err != nil || !again.Duplicate || again.MsgID != edit.MsgID || !again.ServerTime.Equal(edit.ServerTime) {
		t.Errorf("a send with the edit's key: %+v, %v; want the edit's ack", again, err)
	}
}
