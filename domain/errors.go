package domain

import (
	"errors"
	"fmt"
)

// Sentinel errors name a rule that was broken. Transports map them to wire
// codes in one place; wrap them with %w to add context.
var (
	// ErrNotMember: the account is not a member of the group it addressed.
	ErrNotMember = errors.New("not a member of the group")
	// ErrForbidden: the account may not read or change that conversation or group.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound: the group or conversation does not exist.
	ErrNotFound = errors.New("not found")
	// ErrTooLarge: a body, group or request is over its limit.
	ErrTooLarge = errors.New("over the limit")
	// ErrTooLate: the message's edit window has passed.
	ErrTooLate = errors.New("the edit window has passed")
	// ErrConnectedElsewhere: the device (account/device) already has a
	// live connection, held by another gateway instance (R9: one
	// connection per device).
	ErrConnectedElsewhere = errors.New("device connected elsewhere")
)

// InvalidError reports a field that fails validation.
type InvalidError struct {
	Field  string
	Reason string
}

func (e *InvalidError) Error() string { return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason) }

// LimitError reports a value over one of the explicit limits. It matches
// ErrTooLarge with errors.Is.
type LimitError struct {
	Field string
	Limit int
	Got   int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s is %d, over the limit of %d", e.Field, e.Got, e.Limit)
}

// Is makes a LimitError match ErrTooLarge.
func (e *LimitError) Is(target error) bool { return target == ErrTooLarge }
