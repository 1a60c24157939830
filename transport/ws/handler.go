package ws

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lxzan/gws"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/wire"
)

const (
	sessionKey = "s"
	// trustedKey holds the auth.Identity a trusted API gateway vouched for.
	trustedKey = "trusted"
	// helloKey holds the connection's *helloWait.
	helloKey = "hello"
)

// handler receives gws events. Messages of one connection arrive one at a
// time on its read goroutine, so one device's requests are handled in order.
type handler struct {
	gws.BuiltinEventHandler
	g *Gateway
}

func (h *handler) OnOpen(c *gws.Conn) {
	s := newSession(h.g, c, time.Now())
	c.Session().Store(sessionKey, s)
	h.g.add(s)
}

func (h *handler) OnClose(c *gws.Conn, err error) {
	if s := sessionOf(c); s != nil {
		s.closed.Store(true)
		s.stopWork() // a request in flight gives up: nobody waits for its reply
		s.out.discard()
		h.g.remove(s)
	}
}

// OnPing answers a WebSocket ping with a pong through the connection's
// bounded queue. Pings count against the rate limit like every frame: a
// ping past it is not answered, and a ping flood closes the connection.
func (h *handler) OnPing(c *gws.Conn, payload []byte) {
	s := sessionOf(c)
	if s == nil || s.closed.Load() {
		return
	}
	now := time.Now()
	s.lastRead.Store(now.UnixNano())
	if !s.admit(now) {
		return
	}
	s.waitRoom()
	s.pong(payload) // gws allocates each control frame's payload afresh
}

func (h *handler) OnPong(c *gws.Conn, _ []byte) {
	s := sessionOf(c)
	if s == nil || s.closed.Load() {
		return
	}
	now := time.Now()
	s.lastRead.Store(now.UnixNano())
	s.admit(now) // unsolicited pongs count too; there is nothing to answer
}

func sessionOf(c *gws.Conn) *session {
	v, ok := c.Session().Load(sessionKey)
	if !ok {
		return nil
	}
	return v.(*session)
}

func (h *handler) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	s := sessionOf(c)
	if s == nil || s.closed.Load() {
		return
	}
	now := time.Now()
	s.lastRead.Store(now.UnixNano())
	// Every frame counts against the rate limit, malformed ones included.
	admitted := s.admit(now)
	if s.closed.Load() {
		return // flooding
	}
	s.waitRoom()
	if m.Opcode != gws.OpcodeText {
		s.fail("", wire.CodeBadFrame, "frames must be text")
		return
	}
	req, derr := wire.DecodeRequest(m.Bytes())
	if derr != nil {
		code := derr.Code
		if code == wire.CodeUnknownType && s.greeting.Load() == greetNone {
			// Before any hello every request is refused alike; behind a
			// hello under way, a type this server does not know is
			// answered as after it, not as if that hello had failed.
			code = wire.CodeHelloRequired
		}
		s.fail(derr.ID, code, derr.Reason)
		return
	}
	if !admitted {
		s.reply(wire.ServerFrame{ID: req.ID, Type: wire.TypeError, Code: string(wire.CodeRateLimited),
			Error: "too many requests", RetryAfterMs: retryAfter(h.g.cfg.RatePerSecond)})
		return
	}
	// A hello is said on the worker, not here: verifying the token and
	// claiming the route need a deep stack, and the read goroutine of an
	// idle connection keeps the stack it once grew. Whatever follows a
	// pending hello waits behind it, in order, and is served as after a
	// hello that ran here would be.
	greeting := s.greeting.Load()
	if req.Type == wire.TypeHello && greeting == greetNone {
		s.greeting.Store(greetPending)
	}
	if req.Type == wire.TypeHello || greeting == greetPending {
		h.enqueue(s, req)
		return
	}
	if greeting == greetNone {
		s.fail(req.ID, wire.CodeHelloRequired, "say hello with a token first")
		return
	}
	// Pings and renewals are answered at once, on the read goroutine: they
	// keep the connection alive and must not wait behind a slow request.
	// Every other request waits its turn on the connection's worker, so
	// that the reader goes on reading: a close, a ping, a renew are seen
	// while a send waits on the log.
	switch req.Type {
	case wire.TypePing:
		h.ping(s, req, now)
	case wire.TypeRenew:
		h.renew(s, req, now)
	default:
		h.enqueue(s, req)
	}
}

// enqueue hands req to the connection's worker, or answers rate_limited
// when too many requests wait already.
func (h *handler) enqueue(s *session, req wire.Request) {
	if !s.enqueue(req) {
		s.reply(wire.ServerFrame{ID: req.ID, Type: wire.TypeError, Code: string(wire.CodeRateLimited),
			Error: "too many requests waiting on this connection", RetryAfterMs: retryAfter(h.g.cfg.RatePerSecond)})
	}
}

func (h *handler) ping(s *session, req wire.Request, now time.Time) {
	s.reply(wire.ServerFrame{ID: req.ID, Type: wire.TypePong, ServerTime: now.UnixMilli()})
}

// renew extends the lease, optionally with a fresh token for the same
// device.
func (h *handler) renew(s *session, req wire.Request, now time.Time) {
	if req.Token != "" {
		id, err := h.g.tokens.Verify(req.Token)
		if err != nil || id.Account != s.account || id.Device != s.device {
			code := wire.CodeUnauthorized
			if errors.Is(err, auth.ErrTokenExpired) {
				code = wire.CodeTokenExpired
			}
			s.fail(req.ID, code, "the renew token is not valid for this connection")
			return
		}
		s.tokenExpires = id.Expires
	}
	if !s.tokenExpires.IsZero() && !s.tokenExpires.Add(auth.Leeway).After(now) { // the skew the token's check allows
		s.fail(req.ID, wire.CodeTokenExpired, "the token of this connection has expired: renew with a fresh token or reconnect")
		return
	}
	until := s.renewLease(now)
	// On the read goroutine, which sees the connection close only after.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	h.g.refresh(ctx, s)
	cancel()
	s.reply(wire.ServerFrame{ID: req.ID, Type: wire.TypeRenewed, LeaseMs: h.g.cfg.Lease.Milliseconds(),
		LeaseUntil: until.UnixMilli(), ServerTime: now.UnixMilli()})
}

// retryAfter is the wait for one more token of a bucket that fills at
// perSecond.
func retryAfter(perSecond float64) int64 {
	return wire.RetryAfter(time.Duration(float64(time.Second) / perSecond))
}

// hello runs on the connection's worker. A hello that fails leaves the
// connection without one, so that the client may say hello again.
func (h *handler) hello(ctx context.Context, s *session, req wire.Request, now time.Time) {
	if s.welcomed() {
		s.fail(req.ID, wire.CodeHelloRepeated, "this connection already said hello")
		return
	}
	s.greeting.Store(greetPending)
	if !h.welcome(ctx, s, req, now) {
		s.greeting.Store(greetNone)
	}
}

// welcome identifies the device, claims its route and answers welcome; it
// reports false, having answered the error, when it cannot.
func (h *handler) welcome(ctx context.Context, s *session, req wire.Request, now time.Time) bool {
	id, err := h.identify(s, req.Token)
	if err != nil {
		code := wire.CodeUnauthorized
		if errors.Is(err, auth.ErrTokenExpired) {
			code = wire.CodeTokenExpired
		}
		s.fail(req.ID, code, err.Error())
		s.closeWith(wire.CloseUnauthorized, string(code), false)
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	replaced, err := h.g.register(ctx, s, id, now)
	switch {
	case errors.Is(err, errClosedDuringHello):
		return false // nobody to answer
	case errors.Is(err, errDuplicateLogin):
		s.fail(req.ID, wire.CodeDuplicateLogin, "this device is already connected")
		s.closeWith(wire.CloseDuplicateLogin, string(wire.CodeDuplicateLogin), false)
		return false
	case err != nil:
		h.failWith(s, req.ID, err) // unavailable: the client may say hello again
		return false
	}
	if replaced != nil {
		replaced.closeWith(wire.CloseReplaced, wire.ReasonReplaced, true)
	}
	// The hello counts as done only once its welcome is queued and the
	// token's expiry written: from then on the read goroutine answers
	// pings and renewals itself (reading the expiry), and their replies
	// must come after the welcome.
	s.tokenExpires = id.Expires
	until := s.renewLease(now)
	s.out.setLimit(int64(h.g.cfg.MaxQueuedBytes))
	// The connection no longer waits for its hello: its address's place
	// is free before the client can read the welcome and dial again.
	if w, ok := s.conn.Session().Load(helloKey); ok {
		h.g.helloDone(w.(*helloWait))
		s.conn.Session().Delete(helloKey) // an idle connection keeps none of it
	}
	s.reply(wire.ServerFrame{
		ID: req.ID, Type: wire.TypeWelcome, UniqueID: string(s.uid),
		LeaseMs: h.g.cfg.Lease.Milliseconds(), LeaseUntil: until.UnixMilli(),
		HeartbeatMs: h.g.cfg.Heartbeat.Milliseconds(), ServerTime: now.UnixMilli(),
	})
	s.greeting.Store(greetDone)
	return true
}

// identify is the identity of a hello: the one a trusted API gateway put in
// the upgrade request, or else the token's.
func (h *handler) identify(s *session, token string) (auth.Identity, error) {
	if v, ok := s.conn.Session().Load(trustedKey); ok {
		return v.(auth.Identity), nil
	}
	return h.g.tokens.Verify(token)
}

// dispatch runs one queued request on the connection's worker, under
// ctx, which closing the connection cancels.
func (h *handler) dispatch(ctx context.Context, s *session, req wire.Request) {
	if req.Type == wire.TypeHello {
		h.hello(ctx, s, req, time.Now())
		return
	}
	if !s.welcomed() { // it waited behind a hello that failed
		s.fail(req.ID, wire.CodeHelloRequired, "say hello with a token first")
		return
	}
	switch req.Type {
	case wire.TypePing:
		h.ping(s, req, time.Now())
		return
	case wire.TypeRenew:
		h.renew(s, req, time.Now())
		return
	case wire.TypeTyping:
		h.typing(ctx, s, req, time.Now())
		return
	case wire.TypePresence:
		h.presence(ctx, s, req, time.Now())
		return
	case wire.TypeSync:
		h.sync(ctx, s, req)
		return
	}
	f, err := h.answer(ctx, s, req)
	if err != nil {
		h.failWith(s, req.ID, err)
		return
	}
	s.reply(f)
}

// answer runs a request whose reply is one frame.
func (h *handler) answer(ctx context.Context, s *session, req wire.Request) (wire.ServerFrame, error) {
	svc := h.g.svc
	by := domain.Sender{Account: s.account, Device: s.device}
	switch req.Type {
	case wire.TypeSend:
		return ackFrame(req.ID)(svc.Send(ctx, api.SendRequest{From: by, To: api.Target{Account: req.To, Group: req.Group},
			ClientMsgID: req.ClientMsgID, Kind: req.Kind, Body: req.Body, Retry: req.Retry}))
	case wire.TypeEdit:
		return ackFrame(req.ID)(svc.Edit(ctx, api.EditRequest{By: by, Conversation: req.Conversation, MsgID: domain.MsgID(req.MsgID),
			ClientMsgID: req.ClientMsgID, Body: req.Body}))
	case wire.TypeDelete:
		return ackFrame(req.ID)(svc.Delete(ctx, by, req.Conversation, domain.MsgID(req.MsgID), api.ViaSocket))
	case wire.TypeConversations:
		return h.conversations(ctx, s, req)
	case wire.TypeGroupCreate:
		return groupFrame(req.ID)(svc.CreateGroup(ctx, api.Actor{Account: s.account}, req.Name, req.Accounts))
	case wire.TypeGroupAdd:
		return groupFrame(req.ID)(svc.AddMembers(ctx, api.Actor{Account: s.account}, req.Group, req.Accounts))
	case wire.TypeGroupRemove:
		return groupFrame(req.ID)(svc.RemoveMembers(ctx, api.Actor{Account: s.account}, req.Group, req.Accounts))
	case wire.TypeGroups:
		gs, more, err := svc.GroupsPage(ctx, api.Actor{Account: s.account}, req.After)
		if err != nil {
			return wire.ServerFrame{}, err
		}
		out := make([]wire.GroupInfo, len(gs))
		for i, g := range gs {
			out[i] = wire.FromGroup(g)
		}
		return wire.ServerFrame{ID: req.ID, Type: wire.TypeGroupList, Groups: out, HasMore: more}, nil
	case wire.TypeRead:
		st, err := svc.Read(ctx, api.ReadRequest{By: by, Conversation: req.Conversation, MsgID: domain.MsgID(req.MsgID), Via: api.ViaSocket})
		if err != nil {
			return wire.ServerFrame{}, err
		}
		return wire.ServerFrame{ID: req.ID, Type: wire.TypeReadState, Conversation: req.Conversation, ReadMsgID: int64(st.ReadMsgID), Unread: st.Unread}, nil
	case wire.TypeMute:
		return muteFrame(req.ID, req.Conversation)(svc.Mute(ctx, api.Actor{Account: s.account}, req.Conversation, req.Until))
	case wire.TypeUnmute:
		return muteFrame(req.ID, req.Conversation)(svc.Unmute(ctx, api.Actor{Account: s.account}, req.Conversation))
	case wire.TypeReaders:
		rs, err := svc.Readers(ctx, api.Actor{Account: s.account}, req.Conversation, domain.MsgID(req.MsgID))
		if err != nil {
			return wire.ServerFrame{}, err
		}
		accounts := make([]string, len(rs.Accounts))
		for i, a := range rs.Accounts {
			accounts[i] = string(a)
		}
		return wire.ServerFrame{ID: req.ID, Type: wire.TypeReaderCount, Conversation: req.Conversation, MsgID: req.MsgID,
			Count: rs.Count, Of: rs.Of, Accounts: accounts}, nil
	}
	// The decoder lets only known types through: a known type without a
	// case here is a bug, answered internal (and logged), never silence.
	return wire.ServerFrame{}, fmt.Errorf("no handler for request type %q", req.Type)
}

// ackFrame turns the result of a send, an edit or a deletion into its ack.
func ackFrame(id string) func(api.Ack, error) (wire.ServerFrame, error) {
	return func(ack api.Ack, err error) (wire.ServerFrame, error) {
		if err != nil {
			return wire.ServerFrame{}, err
		}
		return wire.FromAck(id, ack.MsgID, ack.MessageID.String(), ack.Conversation, ack.ServerTime, ack.Duplicate), nil
	}
}

// muteFrame turns the result of a mute or an unmute into its reply.
func muteFrame(id, conversation string) func(api.MuteState, error) (wire.ServerFrame, error) {
	return func(m api.MuteState, err error) (wire.ServerFrame, error) {
		if err != nil {
			return wire.ServerFrame{}, err
		}
		return wire.ServerFrame{ID: id, Type: wire.TypeMuteState, Conversation: conversation, Mute: wire.FromMute(m.Muted, api.UnixMilli(m.Until))}, nil
	}
}

// groupFrame turns the result of a group change into its reply.
func groupFrame(id string) func(*domain.Group, error) (wire.ServerFrame, error) {
	return func(g *domain.Group, err error) (wire.ServerFrame, error) {
		if err != nil {
			return wire.ServerFrame{}, err
		}
		info := wire.FromGroup(g)
		return wire.ServerFrame{ID: id, Type: wire.TypeGroup, Group: &info}, nil
	}
}

// sync answers a sync with a page cut to the reply's byte budget, encoded
// without reflection.
func (h *handler) sync(ctx context.Context, s *session, req wire.Request) {
	var lastTime time.Time
	if req.LastTime > 0 {
		lastTime = time.UnixMilli(req.LastTime)
	}
	res, err := h.g.svc.Sync(ctx, api.Actor{Account: s.account}, req.Conversation, lastTime, domain.MsgID(req.LastMsgID), req.Limit, req.Changes)
	if err != nil {
		h.failWith(s, req.ID, err)
		return
	}
	s.write(appendSyncReply(nil, req, res, h.g.cfg.MaxReplyBytes))
}

// appendSyncReply appends the reply to the sync req that res answers, its
// messages cut to budget bytes. A page the cache answered with its
// messages' encodings is made of them, byte for byte what encoding the
// messages gives.
func appendSyncReply(b []byte, req wire.Request, res api.SyncResult, budget int) []byte {
	var changes []wire.Message
	changesMore := res.ChangesMore
	if len(res.Changes) > 0 {
		changes, changesMore, budget = wire.CutChanges(wire.FromMessages(res.Changes), budget, changesMore)
	}
	if res.Encoded != nil && len(res.Encoded) == len(res.Messages) {
		encs, more, next := wire.CutEncodedPage(res.Encoded, func(i int) int64 { return int64(res.Messages[i].MsgID) }, budget, res.More, int64(res.NextMsgID))
		return wire.AppendEncodedMessages(b, req.ID, req.Conversation, encs, res.Source, more, int64(res.GoneThrough),
			wire.Cursor{LastTime: res.NextTime.UnixMilli(), LastMsgID: next}, changes, changesMore)
	}
	msgs, more, next := wire.CutPage(wire.FromMessages(res.Messages), budget, res.More, int64(res.NextMsgID))
	return wire.AppendMessages(b, req.ID, req.Conversation, msgs, res.Source, more, int64(res.GoneThrough),
		wire.Cursor{LastTime: res.NextTime.UnixMilli(), LastMsgID: next}, changes, changesMore)
}

// conversations answers the account's conversation list, with its read
// state in each.
func (h *handler) conversations(ctx context.Context, s *session, req wire.Request) (wire.ServerFrame, error) {
	q := api.ConversationsQuery{Since: time.UnixMilli(req.Since), Limit: req.Limit, BeforeConversation: req.BeforeConversation}
	if req.Before != 0 {
		q.Before = time.UnixMilli(req.Before)
	}
	list, more, err := h.g.svc.Conversations(ctx, api.Actor{Account: s.account}, q)
	if err != nil {
		return wire.ServerFrame{}, err
	}
	out := make([]wire.ConversationInfo, len(list))
	for i, l := range list {
		out[i] = wire.FromConversation(l.Conversation, l.MsgID, l.Time, s.account)
		out[i].ReadMsgID, out[i].Unread = int64(l.ReadMsgID), l.Unread
		out[i].Muted, out[i].MutedUntil = l.Mute.Muted, api.UnixMilli(l.Mute.Until)
	}
	return wire.ServerFrame{ID: req.ID, Type: wire.TypeConversationList, Conversations: out, HasMore: more, ServerTime: time.Now().UnixMilli()}, nil
}

// failWith answers a failed request with its code. The text of an
// unavailable or internal error is fixed: the cause (a database's or
// broker's own message) is logged, never sent to the client.
func (h *handler) failWith(s *session, id string, err error) {
	code := api.Code(err)
	switch code {
	case wire.CodeInternal:
		h.g.log.Error("request failed", "uid", s.uid, "id", id, "err", err)
		s.fail(id, code, "internal error")
	case wire.CodeUnavailable:
		h.g.log.Warn("request unavailable", "uid", s.uid, "id", id, "err", err)
		s.fail(id, code, "the service cannot answer now; retry")
	case wire.CodeRateLimited:
		s.reply(wire.ServerFrame{ID: id, Type: wire.TypeError, Code: string(code), Error: err.Error(),
			RetryAfterMs: wire.RetryAfter(api.RetryAfter(err))})
	default:
		s.fail(id, code, err.Error())
	}
}
