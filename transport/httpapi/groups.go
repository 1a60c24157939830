package httpapi

import (
	"net/http"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/wire"
)

// groupBody is the body of the group changes: Name and Accounts to create,
// Accounts to add or remove.
type groupBody struct {
	Name     string   `json:"name"`
	Accounts []string `json:"accounts"`
}

// groupReply is the socket's group reply without the envelope.
type groupReply struct {
	Group wire.GroupInfo `json:"group"`
}

// groupsReply is the socket's group_list without the envelope; every
// field is always present.
type groupsReply struct {
	Groups  []wire.GroupInfo `json:"groups"`
	HasMore bool             `json:"hasMore"`
}

func (s *server) createGroup(w http.ResponseWriter, r *http.Request, c caller) error {
	return s.changeGroup(w, r, c, http.StatusCreated, func(by api.Actor, b groupBody) (*domain.Group, error) {
		return s.svc.CreateGroup(r.Context(), by, b.Name, b.Accounts)
	})
}

func (s *server) addMembers(w http.ResponseWriter, r *http.Request, c caller) error {
	return s.changeGroup(w, r, c, http.StatusOK, func(by api.Actor, b groupBody) (*domain.Group, error) {
		return s.svc.AddMembers(r.Context(), by, r.PathValue("group"), b.Accounts)
	})
}

func (s *server) removeMembers(w http.ResponseWriter, r *http.Request, c caller) error {
	return s.changeGroup(w, r, c, http.StatusOK, func(by api.Actor, b groupBody) (*domain.Group, error) {
		return s.svc.RemoveMembers(r.Context(), by, r.PathValue("group"), b.Accounts)
	})
}

// changeGroup decodes the body, runs change as the acting account (a
// service's call is not counted against its send budget) and answers the
// group after the change.
func (s *server) changeGroup(w http.ResponseWriter, r *http.Request, c caller, status int, change func(api.Actor, groupBody) (*domain.Group, error)) error {
	who, err := actingAs(r, c)
	if err != nil {
		return err
	}
	var b groupBody
	if err := s.decodeBody(w, r, &b); err != nil {
		return err
	}
	g, err := change(api.Actor{Account: who, Trusted: c.service}, b)
	if err != nil {
		return err
	}
	if status == http.StatusCreated {
		w.Header().Set("Location", Prefix+"/groups/"+string(g.ID()))
	}
	writeJSON(w, status, groupReply{Group: wire.FromGroup(g)})
	return nil
}

func (s *server) group(w http.ResponseWriter, r *http.Request, c caller) error {
	who, err := actingAs(r, c)
	if err != nil {
		return err
	}
	g, err := s.svc.Group(r.Context(), api.Actor{Account: who, Trusted: c.service}, r.PathValue("group"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, groupReply{Group: wire.FromGroup(g)})
	return nil
}

func (s *server) groups(w http.ResponseWriter, r *http.Request, c caller) error {
	who, err := actingAs(r, c)
	if err != nil {
		return err
	}
	gs, more, err := s.svc.GroupsPage(r.Context(), api.Actor{Account: who, Trusted: c.service}, r.URL.Query().Get("after"))
	if err != nil {
		return err
	}
	out := make([]wire.GroupInfo, len(gs))
	for i, g := range gs {
		out[i] = wire.FromGroup(g)
	}
	writeJSON(w, http.StatusOK, groupsReply{Groups: out, HasMore: more})
	return nil
}
