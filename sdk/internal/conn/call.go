package conn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
)

// CallOptions tune Call.
type CallOptions struct {
	// Timeout bounds each attempt; 0 means none beyond ctx.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the waits between attempts.
	MinBackoff, MaxBackoff time.Duration
}

// Call runs fn against the leader until it succeeds, fails in a way that
// retrying cannot fix (see Retryable), or ctx ends. After each retryable
// failure it forgets the leader, so the next attempt rediscovers it. fn must
// be idempotent: an attempt that timed out may have taken effect.
//
// Errors keep their gRPC status: status.Code(err) gives the server's code,
// or DeadlineExceeded/Canceled when ctx ended first (see CtxError).
func (p *Pool) Call(ctx context.Context, op string, o CallOptions,
	fn func(ctx context.Context, cc *grpc.ClientConn) error) error {
	bo := NewBackoff(o.MinBackoff, o.MaxBackoff)
	var last error
	for {
		cc, addr, err := p.Leader(ctx)
		if err == nil {
			err = p.attempt(ctx, o.Timeout, cc, fn)
			if err == nil {
				return nil
			}
			p.Forget(addr)
		}
		if errors.Is(err, ErrClosed) {
			return fmt.Errorf("gridd: %s: %w", op, err)
		}
		if !Retryable(ctx, err) {
			if ctx.Err() != nil {
				return &CtxError{Op: op, Ctx: ctx.Err(), Last: err}
			}
			return fmt.Errorf("gridd: %s: %w", op, err)
		}
		last = err
		d := bo.After(err)
		p.log.Debug("retrying", "op", op, "in", d, "err", err)
		if Wait(ctx, d) != nil {
			return &CtxError{Op: op, Ctx: ctx.Err(), Last: last}
		}
	}
}

func (p *Pool) attempt(ctx context.Context, timeout time.Duration, cc *grpc.ClientConn,
	fn func(ctx context.Context, cc *grpc.ClientConn) error) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return fn(ctx, cc)
}
