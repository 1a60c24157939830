package notify

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-chat/parley/domain"
)

// MaxMutes bounds the conversations one account has muted at once
// (docs/protocol.md, mute): any direct conversation is the account's to
// mute, so without a bound one account could grow the table without end.
// Expired mutes do not count.
const MaxMutes = 1000

// Mutes keeps which conversations each account has muted, and until when.
// It is written by the mute request, not by the log: a mute is a
// preference of one account, with nothing to replay. Every adapter passes
// notifytest.
type Mutes interface {
	// Mute mutes c for account until until (zero: until unmuted). It
	// replaces an earlier mute of c. Past MaxMutes unexpired mutes of
	// other conversations it refuses with domain.ErrTooLarge.
	Mute(ctx context.Context, account domain.AccountID, c domain.ConversationID, until time.Time) error
	// Unmute removes account's mute of c, if any.
	Unmute(ctx context.Context, account domain.AccountID, c domain.ConversationID) error
	// MutedUntil is account's mute of c: ok false when there is none;
	// until zero for a mute without end. An expired mute may still be
	// returned: Muted tells.
	MutedUntil(ctx context.Context, account domain.AccountID, c domain.ConversationID) (until time.Time, ok bool, err error)
	// MutesOf returns account's mutes that are in force at now.
	MutesOf(ctx context.Context, account domain.AccountID, now time.Time) (map[domain.ConversationID]time.Time, error)
	// UnmuteAll removes every mute of account, ended ones included (an
	// erasure: which conversations an account muted is its own data), and
	// reports whether it had any.
	UnmuteAll(ctx context.Context, account domain.AccountID) (bool, error)
}

// Muted reports whether a mute until until is in force at now.
func Muted(until, now time.Time) bool { return until.IsZero() || until.After(now) }

// tooMany is the refusal past MaxMutes.
func tooMany(account domain.AccountID) error {
	return fmt.Errorf("%s has muted %d conversations, the most there may be: %w", account, MaxMutes, domain.ErrTooLarge)
}

// untilMillis stores a mute's end: 0 for none.
func untilMillis(until time.Time) int64 {
	if until.IsZero() {
		return 0
	}
	return until.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
