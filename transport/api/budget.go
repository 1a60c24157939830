package api

import (
	"fmt"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/ratelimit"
	"github.com/parley-chat/parley/transport/wire"
)

// LimitError refuses a request over a rate limit. Nothing of it was done;
// it may be retried after RetryAfter.
type LimitError struct {
	Reason     string
	RetryAfter time.Duration
}

func (e *LimitError) Error() string { return e.Reason }

// MessageCost is what a message with body costs its sender's budget
// (Config.SendRate): SendCost and the body as its pushes carry it, JSON
// escaping included, so that the budget bounds the bytes written to the
// recipients' connections.
func MessageCost(body string) int { return SendCost + wire.StringLen(body) - 2 }

// MaxMessageCost is the cost of the costliest message: a body of
// domain.MaxBodyBytes characters that each escape to six bytes.
const MaxMessageCost = SendCost + 6*domain.MaxBodyBytes

// MemberCost is what each account a group change lists adds to the
// change's cost: the most an account id takes, for the membership row it
// writes (and the id the event carries).
const MemberCost = domain.MaxIDLen

// GroupChangeCost is what a group change listing n accounts costs its
// author's send budget: SendCost, and MemberCost for each account. The
// largest, 500 accounts, is 33,024 bytes, well inside MaxMessageCost.
func GroupChangeCost(n int) int { return SendCost + MemberCost*n }

// Actor is who makes a request that draws on a budget, the send budget
// or the read budget: an account, or a service acting as it (Trusted),
// which the budgets do not count.
type Actor struct {
	Account domain.AccountID
	Trusted bool
}

// spend takes cost from by's send budget (Config.SendRate), or refuses
// the request when the budget does not hold it now; what names the
// request's cost in the refusal. A trusted actor (a service call) is
// never counted: its charge is the zero one, which took nothing.
func (s *Service) spend(by Actor, cost int, what string) (charge, error) {
	if by.Trusted || s.budgets == nil {
		return charge{}, nil
	}
	c := charge{budgets: s.budgets, account: string(by.Account), cost: cost}
	if wait := s.budgets.TakeN(c.account, c.cost, time.Now()); wait > 0 {
		return charge{}, &LimitError{RetryAfter: wait,
			Reason: fmt.Sprintf("this account sends more than %d bytes a second (%s)", int(s.cfg.SendRate), what)}
	}
	return c, nil
}

// spendRead takes one read from by's read budget (Config.ReadRate), or
// refuses the read when the budget is spent. A trusted actor is never
// counted.
func (s *Service) spendRead(by Actor) error {
	if by.Trusted || s.reads == nil {
		return nil
	}
	if wait := s.reads.Take(string(by.Account), time.Now()); wait > 0 {
		return &LimitError{RetryAfter: wait, Reason: s.readRefusal}
	}
	return nil
}

// chargeReads takes n more reads from by's read budget for a read whose
// cost was known only once answered (a conversation list): the next
// reads wait for what the budget lacked. A trusted actor is never
// counted.
func (s *Service) chargeReads(by Actor, n int) {
	if by.Trusted || s.reads == nil {
		return
	}
	s.reads.Charge(string(by.Account), n, time.Now())
}

// What a refusal says each request costs: formatted once, not per send.
var (
	messageCostText     = fmt.Sprintf("a message costs %d plus its body as pushed, escapes included", SendCost)
	groupChangeCostText = fmt.Sprintf("a group change costs %d plus %d for each account it lists", SendCost, MemberCost)
	muteCostText        = fmt.Sprintf("a mute or unmute costs %d", SendCost)
)

// spendMessage takes a message's cost (MessageCost) from by's budget.
func (s *Service) spendMessage(by Actor, body string) (charge, error) {
	return s.spend(by, MessageCost(body), messageCostText)
}

// spendGroupChange takes the cost of a group change listing n accounts
// (GroupChangeCost) from by's budget.
func (s *Service) spendGroupChange(by Actor, n int) (charge, error) {
	return s.spend(by, GroupChangeCost(n), groupChangeCostText)
}

// charge is a message's cost, taken from its sender's budget. It is a
// value, kept with the request's claim, so that a send allocates nothing
// for it; the zero charge took nothing (a nil budget gives nothing back).
type charge struct {
	budgets *ratelimit.Keyed
	account string
	cost    int
}

// settle gives the cost back when the request's outcome says nothing was
// appended: a refusal, or a retry answered with the first ack. A send
// the log may still append (undecided) keeps it; the log's answer gives
// it back if the record did not land (settleLater).
func (c charge) settle(ack Ack, err error) {
	if err != nil {
		if _, undecided := asUndecided(err); undecided {
			return
		}
	}
	if ack.Duplicate || err != nil {
		c.giveBack()
	}
}

// giveBack returns the cost to the budget.
func (c charge) giveBack() { c.budgets.GiveBack(c.account, c.cost, time.Now()) }
