package httpapi

import (
	"net/http"
	"slices"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/wire"
)

// onlineReply lists the connected devices of an account.
type onlineReply struct {
	Account string   `json:"account"`
	Devices []string `json:"devices"`
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
	writeJSON(w, http.StatusOK, onlineReply{Account: string(account), Devices: slices.Compact(out)})
	return nil
}
