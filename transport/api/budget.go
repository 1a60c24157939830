package api

import (
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/domain"
)

// LimitError refuses a request over a rate limit. Nothing of it was done;
// it may be retried after RetryAfter.
type LimitError struct {
	Reason     string
	RetryAfter time.Duration
}

func (e *LimitError) Error() string { return e.Reason }

// spend takes the cost of a message of body bytes from account's send
// budget (Config.SendRate), or refuses the message when the budget does
// not hold it now. settle takes the request's outcome and gives the cost
// back when nothing was appended: a refusal, or a retry answered with the
// first ack. trusted (a service call) is never counted.
func (s *Service) spend(account domain.AccountID, body int, trusted bool) (settle func(Ack, error), err error) {
	if trusted || s.budgets == nil {
		return func(Ack, error) {}, nil
	}
	cost := SendCost + body
	if wait := s.budgets.TakeN(string(account), cost, time.Now()); wait > 0 {
		return nil, &LimitError{RetryAfter: wait,
			Reason: fmt.Sprintf("this account sends more than %d bytes a second (a message costs %d plus its body)", int(s.cfg.SendRate), SendCost)}
	}
	return func(ack Ack, err error) {
		var u *undecided
		if ack.Duplicate || (err != nil && !errors.As(err, &u)) {
			s.budgets.GiveBack(string(account), cost, time.Now())
		}
	}, nil
}
