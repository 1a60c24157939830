package domain

import "time"

// Presence is an account's presence as its contacts see it: online while
// at least one of its devices is connected, else offline since LastSeen,
// the last time one of its devices was known to be connected (zero: never
// seen, or not since the routing state was last lost).
type Presence struct {
	Account  AccountID
	Online   bool
	LastSeen time.Time
}
