package httpapi

import (
	"net/http"

	"github.com/parley-chat/parley/transport/wire"
)

// eraseReply is the answer to an erasure.
type eraseReply struct {
	Account string `json:"account"`
	// KeysDestroyed are the ids of the data keys destroyed now: empty
	// when the account was erased before.
	KeysDestroyed []string `json:"keysDestroyed"`
	// ErasedAt is when, Unix milliseconds: the account's bodies sent at or
	// before it are gone from the read models.
	ErasedAt int64 `json:"erasedAt"`
	// Records is how many AccountErased.v1 records went on the log.
	Records int `json:"records"`
	// Applied tells whether this gateway's read models had applied the
	// erasure when it answered.
	Applied bool `json:"applied"`
}

// erase erases an account: a service's request only. The request has no
// body; one sent is ignored.
func (s *server) erase(w http.ResponseWriter, r *http.Request, c caller) error {
	if !c.service {
		return &apiError{Status: http.StatusForbidden, Code: wire.CodeForbidden, Message: "only a service may erase an account"}
	}
	e, err := s.svc.Erase(r.Context(), r.PathValue("account"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, eraseReply{Account: string(e.Account), KeysDestroyed: e.Keys,
		ErasedAt: e.ErasedAt.UnixMilli(), Records: e.Records, Applied: e.Applied})
	return nil
}
