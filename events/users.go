package events

// User events come from the user service on their own topic, keyed by
// account. Parley consumes them; it never publishes them except through
// `parley logout`, a tool for testing.
const (
	// DefaultUsersTopic carries UserLoggedOut.
	DefaultUsersTopic = "parley.users.v1"
	// DefaultUsersPartitions is the users topic's partition count.
	DefaultUsersPartitions = 4

	UserLoggedOutV1 = "UserLoggedOut.v1"
)

// UserLoggedOut v1: an account, or one device of it, logged out (R7). Every
// gateway closes the matching connections with reason logged_out.
type UserLoggedOut struct {
	// Account that logged out. Required.
	Account string `json:"account"`
	// Device, if set, limits the logout to that device; empty means every
	// device of the account.
	Device string `json:"device,omitempty"`
	// Reason is free text for logs and the client ("password changed").
	Reason string `json:"reason,omitempty"`
	// At is when the user service decided it, Unix milliseconds.
	At int64 `json:"at"`
}

// EventName implements Event.
func (UserLoggedOut) EventName() string { return UserLoggedOutV1 }

// Key implements Event: one account's logouts stay in order.
func (e UserLoggedOut) Key() string { return e.Account }
