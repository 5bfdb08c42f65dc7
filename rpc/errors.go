package rpc

import (
	"context"
	"errors"
	"fmt"

	"github.com/gridd/gridd/cluster"
	"github.com/gridd/gridd/dispatch"
	"github.com/gridd/gridd/fsm"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toStatus maps errors from the layers below to gRPC statuses. It is the one
// place where sentinels become codes; everything below the rpc package
// speaks in sentinels.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, fsm.ErrSessionNotFound), errors.Is(err, fsm.ErrSharedDataNotFound):
		code = codes.NotFound
	case errors.Is(err, fsm.ErrSessionExists), errors.Is(err, fsm.ErrSharedDataExists):
		code = codes.AlreadyExists
	case errors.Is(err, fsm.ErrSessionClosed), errors.Is(err, fsm.ErrLevelNotWritten):
		code = codes.FailedPrecondition
	case errors.Is(err, fsm.ErrUploadGone):
		code = codes.Aborted
	case errors.Is(err, fsm.ErrInvalid), errors.Is(err, errInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, dispatch.ErrNotActive),
		errors.Is(err, dispatch.ErrStreamClosed), errors.Is(err, cluster.ErrClosed):
		code = codes.Unavailable
	case errors.Is(err, cluster.ErrUnknownOutcome):
		return status.Errorf(codes.Unavailable, "%v: the write may or may not have happened; retry with the same request id", err)
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

// errInvalid marks input rejected by the rpc layer's own validation.
var errInvalid = errors.New("invalid argument")

// invalidError is an input error whose text is only the explanation: the
// gRPC code already says "invalid argument", and nested validation errors
// read as one sentence.
type invalidError struct{ msg string }

func (e invalidError) Error() string        { return e.msg }
func (e invalidError) Is(target error) bool { return target == errInvalid }

func invalidf(format string, args ...any) error {
	return invalidError{msg: fmt.Sprintf(format, args...)}
}
