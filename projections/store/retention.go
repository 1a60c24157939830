package store

import (
	"time"

	"github.com/parley-chat/parley/domain"
)

// Floor is how far a conversation's history is gone: every message at or
// below Through was removed by the history retention (--retention).
type Floor struct {
	Conversation domain.ConversationID
	Through      domain.MsgID
	// Messages is how many held messages the floor removes, as Expired
	// found them.
	Messages int
}

// expiredRun is the floor that a conversation's oldest held messages,
// in msgid order, allow: the last msgid of the run of them sent before
// cutoff. A message sent before cutoff that follows a later one (clocks of
// two gateways) waits until that one is old too, so that the history that
// remains is always a whole suffix of the conversation, and the floor one
// number. ok is false when the first message is not old.
func expiredRun(msgs []domain.Message, cutoff time.Time) (through domain.MsgID, n int, ok bool) {
	for _, m := range msgs {
		if !m.ServerTime.Before(cutoff) {
			break
		}
		through, n, ok = m.MsgID, n+1, true
	}
	return through, n, ok
}
