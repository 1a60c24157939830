// Package client is Parley's Go client: it connects to the WebSocket
// gateway, says hello with a token, sends with retries under one client
// message id, receives pushes, keeps the connection alive with pings and
// (optionally) lease renewals. Inbox keeps a per-conversation log that
// detects gaps and syncs them. The end-to-end tests and the load generator
// use it; it is also the reference for writing a client in another language.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"github.com/parley-chat/parley/transport/wire"
)

// Error is an error frame from the server.
type Error struct {
	Code       wire.Code
	Message    string
	RetryAfter time.Duration
}

func (e *Error) Error() string { return fmt.Sprintf("parley: %s: %s", e.Code, e.Message) }

// CodeOf returns the wire code of err, or "" if it is not a server error.
func CodeOf(err error) wire.Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// ErrClosed: the connection is closed; see Client.CloseReason.
var ErrClosed = errors.New("parley: connection closed")

// Config configures a connection.
type Config struct {
	// URL of the gateway's WebSocket endpoint, e.g. ws://127.0.0.1:8080/ws.
	URL string
	// Token is the signed token sent in hello.
	Token string
	// RequestTimeout bounds one request's wait for its reply. Default 10s.
	RequestTimeout time.Duration
	// PingInterval between WebSocket pings; default a third of the
	// server's heartbeat. Negative disables pings.
	PingInterval time.Duration
	// DisableAutoRenew stops renewing the lease when two thirds of it have
	// passed; the server then closes the connection when the lease ends.
	DisableAutoRenew bool
	// SendAttempts bounds Send's retries of one client message id. Default 5.
	SendAttempts int
	// Header is added to the upgrade request.
	Header http.Header
	// LocalAddr, if set, is the local IP to connect from (a load generator
	// spreads connections over 127.0.0.x to get past one address's ports).
	LocalAddr net.IP
	// OnPresence, if set, is called with every account's state in a
	// presence reply and with every presence push for a watched account,
	// in the order the server wrote them, on the connection's read
	// goroutine: it must not block.
	OnPresence func(wire.PresenceInfo)
}

func (c *Config) setDefaults() {
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.SendAttempts == 0 {
		c.SendAttempts = 5
	}
}

// Client is one connection. Its methods are safe for concurrent use.
type Client struct {
	cfg     Config
	conn    *gws.Conn
	welcome wire.ServerFrame

	nextID  atomic.Uint64
	mu      sync.Mutex
	pending map[string]chan wire.ServerFrame

	presence presenceBook

	pushMu   sync.Mutex
	pushCond *sync.Cond
	pushQ    []wire.ServerFrame
	pushes   chan wire.ServerFrame

	done      chan struct{}
	closeOnce sync.Once
	closeCode uint16
	closeText string
	wg        sync.WaitGroup
}

// Dial connects and says hello. A refused hello (bad token, duplicate
// login) returns the server's *Error.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	c, err := Connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := c.Hello(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Connect opens the WebSocket without saying hello; most callers want Dial.
func Connect(ctx context.Context, cfg Config) (*Client, error) {
	cfg.setDefaults()
	c := &Client{cfg: cfg, pending: map[string]chan wire.ServerFrame{}, done: make(chan struct{}), pushes: make(chan wire.ServerFrame)}
	c.pushCond = sync.NewCond(&c.pushMu)
	opt := &gws.ClientOption{
		Addr:               cfg.URL,
		RequestHeader:      cfg.Header,
		ReadMaxPayloadSize: 16 << 20,
		HandshakeTimeout:   cfg.RequestTimeout,
	}
	if cfg.LocalAddr != nil {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: cfg.LocalAddr}, Timeout: cfg.RequestTimeout}
		opt.NewDialer = func() (gws.Dialer, error) { return d, nil }
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < opt.HandshakeTimeout {
		opt.HandshakeTimeout = time.Until(dl)
	}
	conn, _, err := gws.NewClient(&events{c: c}, opt)
	if err != nil {
		return nil, fmt.Errorf("parley: cannot connect to %s: %w", cfg.URL, err)
	}
	c.conn = conn
	c.wg.Add(2)
	go func() { defer c.wg.Done(); conn.ReadLoop() }()
	go c.pumpPushes()
	return c, nil
}

// Hello authenticates the connection with the configured token and starts
// pings and lease renewals.
func (c *Client) Hello(ctx context.Context) (wire.ServerFrame, error) {
	w, err := c.Do(ctx, wire.Request{Type: wire.TypeHello, Token: c.cfg.Token})
	if err != nil {
		return w, err
	}
	c.welcome = w
	if iv := c.pingInterval(); iv > 0 || !c.cfg.DisableAutoRenew {
		c.wg.Add(1)
		go c.keepAlive(iv)
	}
	return w, nil
}

// Raw is the underlying WebSocket, for tests that write hostile frames.
func (c *Client) Raw() *gws.Conn { return c.conn }

// Welcome is the server's answer to hello: lease, heartbeat, server time.
func (c *Client) Welcome() wire.ServerFrame { return c.welcome }

func (c *Client) pingInterval() time.Duration {
	if c.cfg.PingInterval != 0 {
		return c.cfg.PingInterval
	}
	return time.Duration(c.welcome.HeartbeatMs) * time.Millisecond / 3
}

func (c *Client) keepAlive(ping time.Duration) {
	defer c.wg.Done()
	var pingC <-chan time.Time
	if ping > 0 {
		t := time.NewTicker(ping)
		defer t.Stop()
		pingC = t.C
	}
	lease := time.Duration(c.welcome.LeaseMs) * time.Millisecond
	var renewC <-chan time.Time
	if !c.cfg.DisableAutoRenew && lease > 0 {
		t := time.NewTicker(lease * 2 / 3)
		defer t.Stop()
		renewC = t.C
	}
	for {
		select {
		case <-c.done:
			return
		case <-pingC:
			_ = c.conn.WritePing(nil)
		case <-renewC:
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.RequestTimeout)
			_, _ = c.Renew(ctx)
			cancel()
		}
	}
}

// Do sends one request and waits for its reply. An error frame is returned
// as *Error. Do fills in the request id.
func (c *Client) Do(ctx context.Context, req wire.Request) (wire.ServerFrame, error) {
	req.ID = strconv.FormatUint(c.nextID.Add(1), 10)
	b, err := json.Marshal(req)
	if err != nil {
		return wire.ServerFrame{}, err
	}
	return c.do(ctx, req.ID, b)
}

// DoRaw writes a raw frame (for tests of hostile input) and waits for the
// reply with id; an empty id waits for the next reply without an id.
func (c *Client) DoRaw(ctx context.Context, id string, frame []byte) (wire.ServerFrame, error) {
	return c.do(ctx, id, frame)
}

func (c *Client) do(ctx context.Context, id string, frame []byte) (wire.ServerFrame, error) {
	ch := make(chan wire.ServerFrame, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	if err := c.conn.WriteMessage(gws.OpcodeText, frame); err != nil {
		return wire.ServerFrame{}, fmt.Errorf("%w: %v", ErrClosed, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	select {
	case f := <-ch:
		return c.result(f)
	case <-c.done:
		// The reply may have arrived just before the close (an error
		// frame followed by the close that it explains).
		select {
		case f := <-ch:
			return c.result(f)
		default:
			return wire.ServerFrame{}, ErrClosed
		}
	case <-ctx.Done():
		return wire.ServerFrame{}, fmt.Errorf("parley: no reply to request %s: %w", id, ctx.Err())
	}
}

func (c *Client) result(f wire.ServerFrame) (wire.ServerFrame, error) {
	if f.Type == wire.TypeError {
		return f, &Error{Code: wire.Code(f.Code), Message: f.Error, RetryAfter: time.Duration(f.RetryAfterMs) * time.Millisecond}
	}
	return f, nil
}

// Target names whom to send to: an account or a group.
type Target struct {
	Account string
	Group   string
}

// Send sends a message under clientMsgID and returns the ack. It retries on
// timeouts, rate limiting and unavailability with the same clientMsgID, so
// that a retry can never make a second message (the server deduplicates).
func (c *Client) Send(ctx context.Context, to Target, clientMsgID, kind, body string) (wire.ServerFrame, error) {
	return c.send(ctx, wire.Request{Type: wire.TypeSend, To: to.Account, Group: to.Group, ClientMsgID: clientMsgID, Kind: kind, Body: body})
}

// Resend is Send for a message whose earlier attempt got no ack, for
// example on a connection that has since dropped. It marks every attempt as
// a retry, so the server finds the message if it reached the log.
func (c *Client) Resend(ctx context.Context, to Target, clientMsgID, kind, body string) (wire.ServerFrame, error) {
	return c.send(ctx, wire.Request{Type: wire.TypeSend, To: to.Account, Group: to.Group, ClientMsgID: clientMsgID, Kind: kind, Body: body, Retry: true})
}

func (c *Client) send(ctx context.Context, req wire.Request) (wire.ServerFrame, error) {
	var lastErr error
	backoff := 50 * time.Millisecond
	for attempt := 0; attempt < c.cfg.SendAttempts; attempt++ {
		f, err := c.Do(ctx, req)
		if err == nil {
			return f, nil
		}
		lastErr = err
		var se *Error
		switch {
		case errors.As(err, &se) && se.Code == wire.CodeRateLimited:
			// Nothing of it was done: the next attempt is not a retry
			// of one that may have landed (unless an earlier one was).
			backoff = max(backoff, se.RetryAfter)
		case errors.As(err, &se) && se.Code == wire.CodeUnavailable,
			errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			req.Retry = true // it may have landed
		default:
			return f, err
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return wire.ServerFrame{}, ctx.Err()
		case <-c.done:
			return wire.ServerFrame{}, ErrClosed
		}
		backoff *= 2
	}
	return wire.ServerFrame{}, lastErr
}

// Sync reads one page of conversation after cursor.
func (c *Client) Sync(ctx context.Context, conversation string, cur wire.Cursor, limit int) (wire.ServerFrame, error) {
	return c.Do(ctx, wire.Request{Type: wire.TypeSync, Conversation: conversation, LastTime: cur.LastTime, LastMsgID: cur.LastMsgID, Limit: limit})
}

// SyncChanges reads one page of conversation after cursor, with the
// changes (Changes, ChangesMore) to the messages at or below it that a
// device at cursor missed.
func (c *Client) SyncChanges(ctx context.Context, conversation string, cur wire.Cursor, limit int) (wire.ServerFrame, error) {
	return c.Do(ctx, wire.Request{Type: wire.TypeSync, Conversation: conversation, LastTime: cur.LastTime, LastMsgID: cur.LastMsgID,
		Limit: limit, Changes: true})
}

// Conversations lists every conversation changed after since (Unix ms),
// newest first, reading the list's pages one after another (each of 1000
// conversations at most) until the last.
func (c *Client) Conversations(ctx context.Context, since int64) ([]wire.ConversationInfo, error) {
	req := wire.Request{Type: wire.TypeConversations, Since: since}
	var out []wire.ConversationInfo
	for {
		f, err := c.Do(ctx, req)
		if err != nil {
			return nil, err
		}
		out = append(out, f.Conversations...)
		if !f.HasMore || len(f.Conversations) == 0 {
			return out, nil
		}
		last := f.Conversations[len(f.Conversations)-1]
		req.Before, req.BeforeConversation = last.LatestTime, last.Conversation
	}
}

// CreateGroup creates a group with the given members.
func (c *Client) CreateGroup(ctx context.Context, name string, members ...string) (wire.GroupInfo, error) {
	return c.groupOp(ctx, wire.Request{Type: wire.TypeGroupCreate, Name: name, Accounts: members})
}

// AddMembers adds accounts to a group.
func (c *Client) AddMembers(ctx context.Context, group string, accounts ...string) (wire.GroupInfo, error) {
	return c.groupOp(ctx, wire.Request{Type: wire.TypeGroupAdd, Group: group, Accounts: accounts})
}

// RemoveMembers removes accounts from a group.
func (c *Client) RemoveMembers(ctx context.Context, group string, accounts ...string) (wire.GroupInfo, error) {
	return c.groupOp(ctx, wire.Request{Type: wire.TypeGroupRemove, Group: group, Accounts: accounts})
}

func (c *Client) groupOp(ctx context.Context, req wire.Request) (wire.GroupInfo, error) {
	f, err := c.Do(ctx, req)
	if err != nil || f.Group == nil {
		return wire.GroupInfo{}, err
	}
	return *f.Group, nil
}

// Groups lists the caller's groups, every page of them.
func (c *Client) Groups(ctx context.Context) ([]wire.GroupInfo, error) {
	var all []wire.GroupInfo
	after := ""
	for {
		f, err := c.Do(ctx, wire.Request{Type: wire.TypeGroups, After: after})
		if err != nil {
			return all, err
		}
		all = append(all, f.Groups...)
		if !f.HasMore || len(f.Groups) == 0 {
			return all, nil
		}
		after = f.Groups[len(f.Groups)-1].Group
	}
}

// Read marks conversation read up to msgID, inclusive; the reply
// (read_state) carries the cursor and the unread count after it.
func (c *Client) Read(ctx context.Context, conversation string, msgID int64) (wire.ServerFrame, error) {
	return c.Do(ctx, wire.Request{Type: wire.TypeRead, Conversation: conversation, MsgID: msgID})
}

// Readers asks how many of the other participants of conversation have
// read msgID (reader_count; Accounts names them in small conversations).
func (c *Client) Readers(ctx context.Context, conversation string, msgID int64) (wire.ServerFrame, error) {
	return c.Do(ctx, wire.Request{Type: wire.TypeReaders, Conversation: conversation, MsgID: msgID})
}

// Mute mutes the offline notifications of conversation until untilMs
// (Unix ms; 0 for no end, a time passed unmutes); the reply is
// mute_state.
func (c *Client) Mute(ctx context.Context, conversation string, untilMs int64) (wire.ServerFrame, error) {
	return c.Do(ctx, wire.Request{Type: wire.TypeMute, Conversation: conversation, Until: untilMs})
}

// Unmute ends the mute of conversation; the reply is mute_state.
func (c *Client) Unmute(ctx context.Context, conversation string) (wire.ServerFrame, error) {
	return c.Do(ctx, wire.Request{Type: wire.TypeUnmute, Conversation: conversation})
}

// Typing tells the other participants of conversation that this account
// is typing. Send it at most once per second (every few seconds while the
// user types is plenty); a faster one is refused with rate_limited.
func (c *Client) Typing(ctx context.Context, conversation string) error {
	_, err := c.Do(ctx, wire.Request{Type: wire.TypeTyping, Conversation: conversation})
	return err
}

// Renew extends the lease.
func (c *Client) Renew(ctx context.Context) (wire.ServerFrame, error) {
	return c.Do(ctx, wire.Request{Type: wire.TypeRenew})
}

// Pushes delivers every frame without an id — messages ("message"), read
// receipts ("read"), typing signals ("typing"), presence changes
// ("presence") — in the order the server wrote them. Switch on Type;
// Inbox.HandlePush takes them all and keeps what it knows. It is
// fed from an unbounded queue so that a slow reader never stalls replies.
// It is closed after the connection closes and the queue drains.
func (c *Client) Pushes() <-chan wire.ServerFrame { return c.pushes }

func (c *Client) pumpPushes() {
	defer c.wg.Done()
	defer close(c.pushes)
	for {
		c.pushMu.Lock()
		for len(c.pushQ) == 0 && !c.isDone() {
			c.pushCond.Wait()
		}
		if len(c.pushQ) == 0 {
			c.pushMu.Unlock()
			return
		}
		f := c.pushQ[0]
		c.pushQ = c.pushQ[1:]
		c.pushMu.Unlock()
		select {
		case c.pushes <- f:
		case <-c.done:
			// Closed: still hand over what was received, unless nobody reads.
			select {
			case c.pushes <- f:
			case <-time.After(time.Second):
				return
			}
		}
	}
}

func (c *Client) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Done is closed when the connection ends.
func (c *Client) Done() <-chan struct{} { return c.done }

// CloseReason is the close code and reason the server sent, once Done.
func (c *Client) CloseReason() (uint16, string) {
	<-c.done
	return c.closeCode, c.closeText
}

// Close closes the connection (code 1000) and waits for its goroutines.
func (c *Client) Close() {
	_ = c.conn.WriteClose(1000, nil)
	c.finish(1000, "client closed")
	c.wg.Wait()
}

// Drop ends the TCP connection without a close frame, like a device that
// loses its network.
func (c *Client) Drop() {
	_ = c.conn.NetConn().Close()
	<-c.done
}

func (c *Client) finish(code uint16, reason string) {
	c.closeOnce.Do(func() {
		c.closeCode, c.closeText = code, reason
		close(c.done)
		c.pushMu.Lock()
		c.pushCond.Broadcast()
		c.pushMu.Unlock()
	})
}

type events struct {
	gws.BuiltinEventHandler
	c *Client
}

func (e *events) OnClose(_ *gws.Conn, err error) {
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		e.c.finish(ce.Code, string(ce.Reason))
		return
	}
	e.c.finish(0, fmt.Sprint(err))
}

func (e *events) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	f, err := wire.DecodeServerFrame(m.Bytes())
	if err != nil {
		return
	}
	if f.Type == wire.TypePresenceState || f.Type == wire.TypePresencePush {
		e.c.presence.apply(f, e.c.cfg.OnPresence)
	}
	if f.ID == "" && f.Type != wire.TypeError {
		e.c.pushMu.Lock()
		e.c.pushQ = append(e.c.pushQ, f)
		e.c.pushCond.Signal()
		e.c.pushMu.Unlock()
		return
	}
	e.c.mu.Lock()
	ch := e.c.pending[f.ID]
	e.c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- f:
		default:
		}
	}
}
