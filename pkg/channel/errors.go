package channel

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

var (
	// ErrUnreachable is matched (errors.Is) by errors caused by Redis not
	// answering: connection refused, reset, timeouts. The operation may
	// have been applied in part; retry once Redis is back.
	ErrUnreachable = errors.New("redis unreachable")

	// ErrClosed is returned by operations on a Channel after Close.
	ErrClosed = errors.New("channel: client is closed")

	// ErrInvalid is matched by errors about bad arguments (empty ids,
	// forbidden characters) and bad Options.
	ErrInvalid = errors.New("invalid argument")
)

// unreachableError reads "channel: redis ADDR unreachable: OP: CAUSE".
type unreachableError struct {
	addr string
	op   string
	err  error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("channel: redis %s unreachable: %s: %v (check that Redis is running and the address is right; the client reconnects by itself)", e.addr, e.op, e.err)
}

func (e *unreachableError) Unwrap() []error { return []error{ErrUnreachable, e.err} }

// wrap turns a go-redis error into one that names the operation and Redis.
func (c *Channel) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var rerr redis.Error
	switch {
	case errors.Is(err, redis.ErrClosed):
		return fmt.Errorf("%w: %s", ErrClosed, op)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("channel: %s: %w", op, err)
	case errors.As(err, &rerr):
		return fmt.Errorf("channel: %s: redis %s answered: %w", op, c.addr, err)
	default:
		return &unreachableError{addr: c.addr, op: op, err: err}
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("channel: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
