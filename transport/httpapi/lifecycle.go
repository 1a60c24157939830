package httpapi

import (
	"net/http"
	"strconv"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/api"
)

// editBody is the body of PATCH .../messages/{msgId}: the socket's edit
// request, plus From for a service.
type editBody struct {
	From        *senderBody `json:"from"`
	ClientMsgID string      `json:"clientMsgId"`
	Body        string      `json:"body"`
}

// deleteBody is the optional body of DELETE .../messages/{msgId}: a
// service names whom it deletes as.
type deleteBody struct {
	From *senderBody `json:"from"`
}

// msgIDOf reads the {msgId} of the path.
func msgIDOf(r *http.Request) (domain.MsgID, error) {
	id, err := strconv.ParseInt(r.PathValue("msgId"), 10, 64)
	if err != nil || id <= 0 {
		return 0, invalid("msgId must be a positive integer")
	}
	return domain.MsgID(id), nil
}

// change is who changes which message: the caller as a sender (a
// service names it in from) and the path's {msgId}.
func change(r *http.Request, c caller, from *senderBody) (domain.Sender, domain.MsgID, error) {
	by, err := sender(c, from)
	if err != nil {
		return domain.Sender{}, 0, err
	}
	id, err := msgIDOf(r)
	return by, id, err
}

func (s *server) edit(w http.ResponseWriter, r *http.Request, c caller) error {
	var b editBody
	if err := s.decodeBody(w, r, &b); err != nil {
		return err
	}
	by, id, err := change(r, c, b.From)
	if err != nil {
		return err
	}
	ack, err := s.svc.Edit(r.Context(), api.EditRequest{By: by, Conversation: r.PathValue("conversation"), MsgID: id,
		ClientMsgID: b.ClientMsgID, Body: b.Body, Trusted: c.service, Via: api.ViaHTTP})
	if err != nil {
		return err
	}
	writeAck(w, ack)
	return nil
}

func (s *server) deleteMessage(w http.ResponseWriter, r *http.Request, c caller) error {
	var b deleteBody
	if r.ContentLength != 0 {
		if err := s.decodeBody(w, r, &b); err != nil {
			return err
		}
	}
	by, id, err := change(r, c, b.From)
	if err != nil {
		return err
	}
	ack, err := s.svc.Delete(r.Context(), by, r.PathValue("conversation"), id, api.ViaHTTP)
	if err != nil {
		return err
	}
	writeAck(w, ack)
	return nil
}

func writeAck(w http.ResponseWriter, ack api.Ack) {
	var at int64
	if !ack.ServerTime.IsZero() {
		at = ack.ServerTime.UnixMilli()
	}
	writeJSON(w, http.StatusOK, ackReply{MsgID: int64(ack.MsgID), MessageID: ack.MessageID.String(),
		Conversation: ack.Conversation.String(), ServerTime: at, Duplicate: ack.Duplicate})
}
