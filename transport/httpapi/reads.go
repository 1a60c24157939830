package httpapi

import (
	"net/http"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/api"
)

// readBody is the body of POST /conversations/{conversation}/read: the
// socket's read request, plus From for a service.
type readBody struct {
	From  *senderBody `json:"from"`
	MsgID int64       `json:"msgId"`
}

// readStateReply is the socket's read_state without the envelope; every
// field is always present.
type readStateReply struct {
	Conversation string `json:"conversation"`
	ReadMsgID    int64  `json:"readMsgId"`
	Unread       int64  `json:"unread"`
}

func (s *server) read(w http.ResponseWriter, r *http.Request, c caller) error {
	var b readBody
	if err := s.decodeBody(w, r, &b); err != nil {
		return err
	}
	who, err := sender(c, b.From)
	if err != nil {
		return err
	}
	conv := r.PathValue("conversation")
	st, err := s.svc.Read(r.Context(), api.ReadRequest{By: who, Conversation: conv, MsgID: domain.MsgID(b.MsgID), Trusted: c.service, Via: api.ViaHTTP})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, readStateReply{Conversation: conv, ReadMsgID: int64(st.ReadMsgID), Unread: st.Unread})
	return nil
}

// readersReply is the socket's reader_count without the envelope; every
// field is always present (accounts is null above the receipt size).
type readersReply struct {
	Conversation string   `json:"conversation"`
	MsgID        int64    `json:"msgId"`
	Count        int      `json:"count"`
	Of           int      `json:"of"`
	Accounts     []string `json:"accounts"`
}

func (s *server) readers(w http.ResponseWriter, r *http.Request, c caller) error {
	who, err := actingAs(r, c)
	if err != nil {
		return err
	}
	msgID, err := queryInt(r.URL.Query(), "msgId")
	if err != nil {
		return err
	}
	conv := r.PathValue("conversation")
	rs, err := s.svc.Readers(r.Context(), api.Actor{Account: who, Trusted: c.service}, conv, domain.MsgID(msgID))
	if err != nil {
		return err
	}
	out := readersReply{Conversation: conv, MsgID: msgID, Count: rs.Count, Of: rs.Of}
	if rs.Accounts != nil { // [] for no reader yet; null where readers are not named
		out.Accounts = make([]string, len(rs.Accounts))
		for i, a := range rs.Accounts {
			out.Accounts[i] = string(a)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
