package wire

import (
	"math"
	"time"
)

// Code is a stable error code. Codes never change meaning; new ones may be
// added. Clients switch on the code, never on the human text.
type Code string

// Error codes. The comment says what the server does besides answering.
const (
	// CodeBadFrame: the frame is not a JSON object. The connection stays.
	CodeBadFrame Code = "bad_frame"
	// CodeUnknownType: the type is not one this server knows. The connection stays.
	CodeUnknownType Code = "unknown_type"
	// CodeInvalidArgument: a field is missing or malformed. The connection stays.
	CodeInvalidArgument Code = "invalid_argument"
	// CodeTooLarge: a body, group or list is over its documented limit.
	CodeTooLarge Code = "too_large"
	// CodeHelloRequired: a request came before a successful hello.
	CodeHelloRequired Code = "hello_required"
	// CodeHelloRepeated: hello came twice on one connection.
	CodeHelloRepeated Code = "hello_repeated"
	// CodeUnauthorized: the token is missing, malformed or badly signed. The
	// server closes the connection.
	CodeUnauthorized Code = "unauthorized"
	// CodeTokenExpired: the token's exp has passed. The server closes the connection.
	CodeTokenExpired Code = "token_expired"
	// CodeDuplicateLogin: this account/device is already connected and alive.
	// The server closes the new connection; the old one stays.
	CodeDuplicateLogin Code = "duplicate_login"
	// CodeNotMember: the account is not a member of the group.
	CodeNotMember Code = "not_member"
	// CodeForbidden: the account may not read or change that conversation or group.
	CodeForbidden Code = "forbidden"
	// CodeNotFound: no such group.
	CodeNotFound Code = "not_found"
	// CodeRateLimited: too many requests; retry after RetryAfterMs. Nothing
	// of the refused request was accepted.
	CodeRateLimited Code = "rate_limited"
	// CodeUnavailable: the event log or a read model cannot answer now;
	// retry. A send answered so may still have reached the log: retry it
	// with the same clientMsgId and "retry": true. A group change answered
	// so may have been applied: list the groups before repeating it.
	CodeUnavailable Code = "unavailable"
	// CodeInternal: a server bug. Nothing of the refused request was accepted.
	CodeInternal Code = "internal"
)

// Close codes and reasons. The server closes a WebSocket with one of these
// codes and the reason text named beside it, so a client knows whether to
// reconnect (and resync) or to stop.
const (
	// CloseUnauthorized, reason "unauthorized" or "token_expired": get a new token.
	CloseUnauthorized = 4001
	// CloseDuplicateLogin, reason "duplicate_login": another live connection holds this device.
	CloseDuplicateLogin = 4003
	// CloseLeaseExpired, reason "lease_expired": the lease was not renewed; reconnect.
	CloseLeaseExpired = 4004
	// CloseSlowConsumer, reason "slow_consumer": pushes could not be written
	// in time; reconnect and sync (I5).
	CloseSlowConsumer = 4005
	// CloseHeartbeatTimeout, reason "heartbeat_timeout": nothing was read for
	// longer than the heartbeat interval; reconnect.
	CloseHeartbeatTimeout = 4006
	// CloseHelloTimeout, reason "hello_timeout": no hello in time after connecting.
	CloseHelloTimeout = 4007
	// CloseGoingAway (1001), reason "shutting_down": the server is stopping; reconnect.
	CloseGoingAway = 1001
	// CloseTooBig (1009): a frame was over MaxFrameBytes (the reason is
	// gws's own, or ReasonTooBig for one refused before gws read it).
	CloseTooBig = 1009
)

// ReasonTooBig is the reason of a CloseTooBig sent before the WebSocket
// library read the frame's header.
const ReasonTooBig = "frame too large"

// Close reasons sent with the close codes.
const (
	ReasonLeaseExpired     = "lease_expired"
	ReasonSlowConsumer     = "slow_consumer"
	ReasonHeartbeatTimeout = "heartbeat_timeout"
	ReasonHelloTimeout     = "hello_timeout"
	ReasonShuttingDown     = "shutting_down"
)

// CloseReplaced, reason "replaced": a new connection of the same device took
// over this one, which had gone silent.
const (
	CloseReplaced  = 4008
	ReasonReplaced = "replaced"
)

// CloseLoggedOut, reason "logged_out": the user service logged the account
// (or this device) out. Do not reconnect with the same token.
const (
	CloseLoggedOut  = 4009
	ReasonLoggedOut = "logged_out"
)

// CloseFlood, reason "flood": the client went on sending far past its rate
// limit (frames refused with rate_limited, or pings left unanswered, more
// than ten times its burst in a row). Reconnect with backoff and send less.
const (
	CloseFlood  = 4010
	ReasonFlood = "flood"
)

// CloseBusy (1013, "try again later"), reason "busy": the messages the
// server was part way through reading, of every connection together (or
// of this connection's source address), held all the memory it keeps for
// them. Reconnect with backoff and send the message again.
const (
	CloseBusy  = 1013
	ReasonBusy = "busy"
)

// CloseMessageTimeout (1008, "policy violation"), reason
// "message_timeout": a message took longer than 30 s from its first
// frame's header to its last byte. Reconnect and send it again.
const (
	CloseMessageTimeout  = 1008
	ReasonMessageTimeout = "message_timeout"
)

// CloseRouteLost, reason "route_lost": this gateway could not renew its
// liveness in the route table (Redis) for long enough that another gateway
// may take its devices over; it closes them itself so that a device never
// has two live connections. Reconnect with backoff, say hello, sync.
const (
	CloseRouteLost  = 4011
	ReasonRouteLost = "route_lost"
)

// RetryAfter is the retryAfterMs of a wait d: whole milliseconds rounded
// up, at least 1, so that a client that waits exactly that long has waited
// at least d.
func RetryAfter(d time.Duration) int64 {
	if d > math.MaxInt64-time.Millisecond {
		return int64(math.MaxInt64 / time.Millisecond)
	}
	return max(1, int64((d+time.Millisecond-1)/time.Millisecond))
}
