package wire

import "strconv"

// Presence (docs/protocol.md, "Presence"): a presence request subscribes
// the connection to the online/offline changes of a list of accounts and
// answers with their current state; the changes come as presence pushes,
// to the connections that asked only.
const (
	// TypePresence is the request: Accounts (empty: unsubscribe).
	TypePresence = "presence"
	// TypePresenceState replies to presence: Presence, one entry per
	// account asked, in the order asked, duplicates left out.
	TypePresenceState = "presence_state"
	// TypePresencePush is the push: Account, Online, LastSeen.
	TypePresencePush = "presence"
	// MaxPresenceAccounts bounds the accounts of one presence request, and
	// so the subscriptions of one connection.
	MaxPresenceAccounts = 256
	// PresenceAccountsPerToken: a presence request takes one token of the
	// connection's rate limit per this many accounts, rounded up (one at
	// least), since each account is a lookup in the route table.
	PresenceAccountsPerToken = 32
)

// PresenceInfo is one account's presence in presence_state.
type PresenceInfo struct {
	Account string `json:"account"`
	Online  bool   `json:"online"`
	// LastSeen is when one of the account's devices was last known
	// connected (Unix ms); only when offline, and absent if never seen.
	LastSeen int64 `json:"lastSeen,omitempty"`
}

// AppendPresencePush appends the presence push of account. lastSeen is
// written only when offline and known.
func AppendPresencePush(b []byte, account string, online bool, lastSeen int64) []byte {
	b = grow(b, 64+len(account))
	b = append(b, `{"type":"presence","account":`...)
	b = appendString(b, account)
	if online {
		return append(b, `,"online":true}`...)
	}
	b = append(b, `,"online":false`...)
	if lastSeen > 0 {
		b = append(b, `,"lastSeen":`...)
		b = strconv.AppendInt(b, lastSeen, 10)
	}
	return append(b, '}')
}
