package httpapi

import (
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/wire"
)

// sendBody is the body of POST /messages: the socket's send request, plus
// From for a service.
type sendBody struct {
	// From is the sender a service sends as; a user's token names it.
	From        *senderBody `json:"from"`
	To          string      `json:"to"`
	Group       string      `json:"group"`
	ClientMsgID string      `json:"clientMsgId"`
	Kind        string      `json:"kind"`
	Body        string      `json:"body"`
	Retry       bool        `json:"retry"`
}

type senderBody struct {
	Account string `json:"account"`
	Device  string `json:"device"`
}

// ackReply is the socket's ack without the frame envelope.
type ackReply struct {
	MsgID        int64  `json:"msgId"`
	MessageID    string `json:"messageId"`
	Conversation string `json:"conversation"`
	ServerTime   int64  `json:"serverTime"`
	Duplicate    bool   `json:"duplicate"`
}

func (s *server) send(w http.ResponseWriter, r *http.Request, c caller) error {
	var b sendBody
	if err := s.decodeBody(w, r, &b); err != nil {
		return err
	}
	from, err := sender(c, b.From)
	if err != nil {
		return err
	}
	ack, err := s.svc.Send(r.Context(), api.SendRequest{From: from, To: api.Target{Account: b.To, Group: b.Group},
		ClientMsgID: b.ClientMsgID, Kind: b.Kind, Body: b.Body, Retry: b.Retry, Trusted: c.service})
	if err != nil {
		return err
	}
	writeAck(w, ack)
	return nil
}

// sender is who a send is from: a user is its token's account and device
// (a "from" naming anyone else is forbidden); a service must name both.
func sender(c caller, from *senderBody) (domain.Sender, error) {
	if !c.service {
		if from != nil && (domain.AccountID(from.Account) != c.account || domain.DeviceID(from.Device) != c.device) {
			return domain.Sender{}, &apiError{Status: http.StatusForbidden, Code: wire.CodeForbidden, Message: "a user token acts only as its own account and device"}
		}
		return domain.Sender{Account: c.account, Device: c.device}, nil
	}
	if from == nil {
		return domain.Sender{}, invalid("a service request needs from: {account, device}, the device it acts as")
	}
	a, err := domain.ParseAccountID(from.Account)
	if err != nil {
		return domain.Sender{}, err
	}
	d, err := domain.ParseDeviceID(from.Device)
	if err != nil {
		return domain.Sender{}, err
	}
	return domain.Sender{Account: a, Device: d}, nil
}

// messagesReply is the socket's messages reply without the envelope; every
// field but goneThrough, changes and changesMore is always present. Messages is the JSON array of the page, encoded
// by pageOf.
type messagesReply struct {
	Conversation string          `json:"conversation"`
	Messages     json.RawMessage `json:"messages"`
	Source       string          `json:"source"`
	HasMore      bool            `json:"hasMore"`
	// GoneThrough is the last msgid the history retention removed after
	// the request's cursor, present only when there is one.
	GoneThrough int64       `json:"goneThrough,omitempty"`
	Next        wire.Cursor `json:"next"`
	// Changes (asked for with changes=true) and ChangesMore are the
	// socket's: present only when there are changes, or more of them.
	Changes     json.RawMessage `json:"changes,omitempty"`
	ChangesMore bool            `json:"changesMore,omitempty"`
}

// arrayOf encodes msgs as a JSON array.
func arrayOf(msgs []wire.Message) json.RawMessage {
	b := []byte{'['}
	for i := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = wire.AppendMessage(b, &msgs[i])
	}
	return append(b, ']')
}

func (s *server) sync(w http.ResponseWriter, r *http.Request, c caller) error {
	who, err := actingAs(r, c)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	lastTimeMs, err := queryInt(q, "lastTime")
	if err != nil {
		return err
	}
	lastMsgID, err := queryInt(q, "lastMsgId")
	if err != nil {
		return err
	}
	limit, err := queryLimit(q)
	if err != nil {
		return err
	}
	withChanges, err := queryBool(q, "changes")
	if err != nil {
		return err
	}
	var lastTime time.Time
	if lastTimeMs > 0 {
		lastTime = time.UnixMilli(lastTimeMs)
	}
	conv := r.PathValue("conversation")
	res, err := s.svc.Sync(r.Context(), api.Actor{Account: who, Trusted: c.service}, conv, lastTime, domain.MsgID(lastMsgID), limit, withChanges)
	if err != nil {
		return err
	}
	// The changes take at most half of the page's bytes (wire.CutChanges).
	budget := s.cfg.SyncPageBytes
	var changes json.RawMessage
	changesMore := res.ChangesMore
	if len(res.Changes) > 0 {
		var cut []wire.Message
		cut, changesMore, budget = wire.CutChanges(wire.FromMessages(res.Changes), budget, changesMore)
		changes = arrayOf(cut)
	}
	// Up to 200 messages of 16 KiB, each character of which may take 6
	// bytes in JSON, make a 20 MB reply, held while a client doesn't read
	// it. The page is cut to SyncPageBytes; the cursor then points at the
	// last message sent, so the next page starts right after it.
	msgs, more, next := wire.CutPage(wire.FromMessages(res.Messages), budget, res.More, int64(res.NextMsgID))
	writeJSON(w, http.StatusOK, messagesReply{Conversation: conv, Messages: arrayOf(msgs),
		Source: res.Source, HasMore: more, GoneThrough: int64(res.GoneThrough), Next: wire.Cursor{LastTime: res.NextTime.UnixMilli(), LastMsgID: next},
		Changes: changes, ChangesMore: changesMore})
	return nil
}

// queryLimit reads limit. The service lowers large values to its maximum;
// clamping here only keeps the conversion to int safe everywhere.
func queryLimit(q url.Values) (int, error) {
	n, err := queryInt(q, "limit")
	if err != nil {
		return 0, err
	}
	return int(max(min(n, math.MaxInt32), math.MinInt32)), nil
}

// conversationsReply is the socket's conversation_list without the
// envelope; every field is always present.
type conversationsReply struct {
	Conversations []wire.ConversationInfo `json:"conversations"`
	HasMore       bool                    `json:"hasMore"`
	ServerTime    int64                   `json:"serverTime"`
}

func (s *server) conversations(w http.ResponseWriter, r *http.Request, c caller) error {
	who, err := actingAs(r, c)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	since, err := queryInt(q, "since")
	if err != nil {
		return err
	}
	limit, err := queryLimit(q)
	if err != nil {
		return err
	}
	before, err := queryInt(q, "before")
	if err != nil {
		return err
	}
	page := api.ConversationsQuery{Since: time.UnixMilli(since), Limit: limit, BeforeConversation: q.Get("beforeConversation")}
	if before != 0 {
		page.Before = time.UnixMilli(before)
	}
	now := time.Now()
	list, more, err := s.svc.Conversations(r.Context(), api.Actor{Account: who, Trusted: c.service}, page)
	if err != nil {
		return err
	}
	out := make([]wire.ConversationInfo, len(list))
	for i, l := range list {
		out[i] = wire.FromConversation(l.Conversation, l.MsgID, l.Time, who)
		out[i].ReadMsgID, out[i].Unread = int64(l.ReadMsgID), l.Unread
		out[i].Muted, out[i].MutedUntil = l.Mute.Muted, api.UnixMilli(l.Mute.Until)
	}
	writeJSON(w, http.StatusOK, conversationsReply{Conversations: out, HasMore: more, ServerTime: now.UnixMilli()})
	return nil
}
