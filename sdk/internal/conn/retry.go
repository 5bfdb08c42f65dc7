package conn

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Retryable reports whether a failed unary call may be tried again. Every
// write the SDK makes carries an idempotency key, so repeating one whose
// outcome is unknown is safe; what decides is whether trying again can help.
// Unavailable (no leader, node down, stream torn) and Aborted (leadership
// lost mid-write) can; DeadlineExceeded can only when it was the per-attempt
// timeout that fired (a dead node that never answered) and the caller's own
// context is still alive. Anything else is the caller's problem to fix.
func Retryable(parent context.Context, err error) bool {
	if err == nil || parent.Err() != nil {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted, codes.DeadlineExceeded:
		return true
	}
	return false
}

// Permanent reports whether a broken stream must not be reopened: the server
// said the request itself is wrong, so a new stream would fail the same way.
// A stream that merely broke (node killed, connection reset, leader changed,
// server closed it cleanly) is reopened.
func Permanent(err error) bool {
	if err == nil || errors.Is(err, io.EOF) {
		return false
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition,
		codes.AlreadyExists, codes.PermissionDenied, codes.Unauthenticated,
		codes.ResourceExhausted, codes.Unimplemented, codes.OutOfRange:
		return true
	}
	return false
}

// CtxError is returned when the caller's context ended while an operation
// was still retrying. It carries the gRPC code of the context's end
// (DeadlineExceeded or Canceled) for status.Code, matches the context error
// with errors.Is, and keeps the last attempt's error for the message.
type CtxError struct {
	Op   string
	Ctx  error // context.Canceled or context.DeadlineExceeded
	Last error // the last attempt's error, if any
}

func (e *CtxError) Error() string {
	if e.Last == nil {
		return fmt.Sprintf("gridd: %s: %v", e.Op, e.Ctx)
	}
	return fmt.Sprintf("gridd: %s: %v (last attempt: %v)", e.Op, e.Ctx, e.Last)
}

// Unwrap exposes both errors to errors.Is and errors.As.
func (e *CtxError) Unwrap() []error {
	if e.Last == nil {
		return []error{e.Ctx}
	}
	return []error{e.Ctx, e.Last}
}

// GRPCStatus makes status.Code report the context's end rather than the
// last attempt's code.
func (e *CtxError) GRPCStatus() *status.Status {
	return status.New(status.FromContextError(e.Ctx).Code(), e.Error())
}
