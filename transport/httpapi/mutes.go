package httpapi

import (
	"net/http"

	"github.com/parley-chat/parley/transport/api"
)

// muteBody is the body of PUT /conversations/{conversation}/mute: the
// socket's mute request.
type muteBody struct {
	// Until is Unix ms; 0 or absent for no end.
	Until int64 `json:"until"`
}

// muteReply is the socket's mute_state without the envelope; every field
// is always present (mutedUntil 0: no end, or not muted).
type muteReply struct {
	Conversation string `json:"conversation"`
	Muted        bool   `json:"muted"`
	MutedUntil   int64  `json:"mutedUntil"`
}

func (s *server) mute(w http.ResponseWriter, r *http.Request, c caller) error {
	who, err := actingAs(r, c)
	if err != nil {
		return err
	}
	var b muteBody
	if err := s.decodeBody(w, r, &b); err != nil {
		return err
	}
	conv := r.PathValue("conversation")
	return writeMute(w, conv)(s.svc.Mute(r.Context(), api.Actor{Account: who, Trusted: c.service}, conv, b.Until))
}

func (s *server) unmute(w http.ResponseWriter, r *http.Request, c caller) error {
	who, err := actingAs(r, c)
	if err != nil {
		return err
	}
	conv := r.PathValue("conversation")
	return writeMute(w, conv)(s.svc.Unmute(r.Context(), api.Actor{Account: who, Trusted: c.service}, conv))
}

func writeMute(w http.ResponseWriter, conv string) func(api.MuteState, error) error {
	return func(m api.MuteState, err error) error {
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, muteReply{Conversation: conv, Muted: m.Muted, MutedUntil: api.UnixMilli(m.Until)})
		return nil
	}
}
