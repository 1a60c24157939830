package api

import (
	"errors"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/wire"
)

// Code maps an error of the service to its wire code. It is the one place
// where Go errors become protocol errors, for every transport.
func Code(err error) wire.Code {
	var invalid *domain.InvalidError
	var limit *LimitError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, domain.ErrTooLarge):
		return wire.CodeTooLarge
	case errors.As(err, &invalid):
		return wire.CodeInvalidArgument
	case errors.Is(err, domain.ErrNotMember):
		return wire.CodeNotMember
	case errors.Is(err, domain.ErrForbidden):
		return wire.CodeForbidden
	case errors.Is(err, domain.ErrTooLate):
		return wire.CodeTooLate
	case errors.Is(err, domain.ErrNotFound):
		return wire.CodeNotFound
	case errors.Is(err, ErrUnavailable):
		return wire.CodeUnavailable
	case errors.As(err, &limit):
		return wire.CodeRateLimited
	}
	return wire.CodeInternal
}

// RetryAfter is how long a client refused rate_limited by err should wait
// before it retries; 0 for any other error.
func RetryAfter(err error) time.Duration {
	var limit *LimitError
	if errors.As(err, &limit) {
		return limit.RetryAfter
	}
	return 0
}
