package httpapi

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/wire"
)

// onlineReply lists the connected devices of an account, and its
// presence where the server keeps it.
type onlineReply struct {
	Account string   `json:"account"`
	Devices []string `json:"devices"`
	// Online and LastSeen (Unix ms, only when offline and known) are the
	// account's presence, as presence requests on the WebSocket see it.
	Online   *bool `json:"online,omitempty"`
	LastSeen int64 `json:"lastSeen,omitempty"`
}

func (s *server) online(w http.ResponseWriter, r *http.Request, c caller) error {
	account, err := domain.ParseAccountID(r.PathValue("account"))
	if err != nil {
		return err
	}
	if !c.service && c.account != account {
		return &apiError{Status: http.StatusForbidden, Code: wire.CodeForbidden, Message: "only a service or the account itself may see who of it is online"}
	}
	if s.cfg.Online == nil {
		return &apiError{Status: http.StatusNotImplemented, Code: wire.CodeUnavailable, Message: "this server does not report who is online"}
	}
	devices, err := s.cfg.Online(r.Context(), account)
	if err != nil {
		return err
	}
	out := make([]string, 0, len(devices))
	for _, d := range devices {
		out = append(out, string(d))
	}
	slices.Sort(out)
	reply := onlineReply{Account: string(account), Devices: slices.Compact(out)}
	if s.cfg.Presence != nil {
		ps, err := s.cfg.Presence(r.Context(), []domain.AccountID{account})
		if err != nil {
			return fmt.Errorf("%w: %v", api.ErrUnavailable, err)
		}
		if len(ps) == 1 {
			on := ps[0].Online
			reply.Online = &on
			if !on && !ps[0].LastSeen.IsZero() {
				reply.LastSeen = ps[0].LastSeen.UnixMilli()
			}
		}
	}
	writeJSON(w, http.StatusOK, reply)
	return nil
}
