// Package logout applies the user service's UserLoggedOut events (R7):
// every gateway instance reads the users topic and closes the matching
// connections it holds with reason logged_out.
package logout

import (
	"context"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
)

// Name is the handler's stable name.
const Name = "parley.gateway.logout"

// Closer closes the local connections of an account, or of one device
// when device is not empty, and says how many it closed.
type Closer interface {
	Logout(account domain.AccountID, device domain.DeviceID, reason string) int
}

// Projection closes connections on logout events.
type Projection struct{ closer Closer }

// NewProjection returns the logout handler for a gateway.
func NewProjection(c Closer) *Projection { return &Projection{closer: c} }

// Apply implements projections.Projection. Closing twice closes nothing
// the second time, so a redelivered event is harmless.
func (p *Projection) Apply(_ context.Context, r projections.Record) error {
	e, ok := r.Event.(events.UserLoggedOut)
	if !ok {
		return nil
	}
	a, err := domain.ParseAccountID(e.Account)
	if err != nil {
		return &projections.PoisonError{Err: err}
	}
	var d domain.DeviceID
	if e.Device != "" {
		if d, err = domain.ParseDeviceID(e.Device); err != nil {
			return &projections.PoisonError{Err: err}
		}
	}
	p.closer.Logout(a, d, e.Reason)
	return nil
}
