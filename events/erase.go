package events

// AccountErasedV1 is the versioned name of AccountErased.
const AccountErasedV1 = "AccountErased.v1"

// AccountErased v1: an operator erased an account (`parley erase`, or the
// HTTP API's erase). Its data keys were destroyed before this was
// appended, so no reader can open its sealed bodies again; the event tells
// every read model to drop the bodies it already holds, with the account's
// read cursors and group memberships.
//
// It is appended once to every partition of the conversation topic
// (Partitions records, all alike): a partition's record comes after every
// message of that partition sealed before the erasure, so a projection
// that applies it in log order has applied those messages already, and
// one that lags, a replay included, cannot bring a body back after it.
type AccountErased struct {
	// Account is the erased account.
	Account string `json:"account"`
	// Keys are the ids of the data keys destroyed (none when the account
	// was erased already, or never sent a sealed body).
	Keys []string `json:"keys"`
	// ErasedAt is when the keys were destroyed, Unix milliseconds. Read
	// models drop the bodies of the account's messages sent (serverTime)
	// at or before it.
	ErasedAt int64 `json:"erasedAt"`
	// Partitions is how many records of this erasure there are: one per
	// partition of the topic.
	Partitions int32 `json:"partitions"`
}

// EventName implements Event.
func (AccountErased) EventName() string { return AccountErasedV1 }

// Key implements Event: the account, prefixed so it is no conversation id.
// The record's partition is not the key's hash: there is one in each.
func (e AccountErased) Key() string { return "a:" + e.Account }
