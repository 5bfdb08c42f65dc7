package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// errUnreachable: no address answered at all; nothing was asked of gridd.
var errUnreachable = errors.New("cannot reach any of")

// rpcError is an answer from a node that said no. It keeps the status so
// that callers can test the code with status.Code / errors.As.
type rpcError struct {
	addr string
	st   *status.Status
	hint string
}

func (e *rpcError) Error() string {
	msg := fmt.Sprintf("%s: %s", codeWords(e.st.Code()), e.st.Message())
	if e.hint != "" {
		msg += " (" + e.hint + ")"
	}
	return msg
}

// GRPCStatus lets status.FromError and status.Code see the original status.
func (e *rpcError) GRPCStatus() *status.Status { return e.st }

// codeWords spells a code as words, "NotFound" as "not found".
func codeWords(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return strings.ToLower(b.String())
}

// hintFor says what a person can do about an error code from gridd.
func hintFor(c codes.Code, g *globals) string {
	switch c {
	case codes.Unauthenticated:
		return "pass --api-key or set GRIDCTL_API_KEY"
	case codes.PermissionDenied:
		return "check --api-key or GRIDCTL_API_KEY"
	case codes.DeadlineExceeded:
		return fmt.Sprintf("no answer within --timeout %s; the cluster may be electing a leader or overloaded", g.timeout)
	case codes.Unavailable:
		return "the cluster may be electing a leader or have lost its majority; retry, and see gridctl cluster status"
	case codes.Unimplemented:
		return "is this address a gridd node of the same version?"
	}
	return ""
}

// call runs fn against each address in turn until a node answers, with a
// connection that sends the API key. Only an address that could not be
// reached is skipped; a node's answer, even an error, ends the search,
// because another node would say the same (followers forward to the
// leader). Writes carry idempotency keys, so trying the next address after
// a dropped connection cannot apply one twice.
func call(ctx context.Context, g *globals, fn func(ctx context.Context, cc *grpc.ClientConn) error) error {
	var reasons []string
	for _, addr := range g.addrs {
		reached, err := callOne(ctx, g, addr, fn)
		if err == nil {
			return nil
		}
		if reached {
			if st, ok := status.FromError(err); ok {
				return &rpcError{addr: addr, st: st, hint: hintFor(st.Code(), g)}
			}
			return err
		}
		reasons = append(reasons, addr+": "+reachReason(err, g))
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("%w %s: is gridd running? (%s)", errUnreachable, strings.Join(g.addrs, ", "), joinReasons(reasons))
}

// callOne reports whether the node at addr was reached: a call that fails
// on a connection that never became ready never reached gridd.
func callOne(ctx context.Context, g *globals, addr string, fn func(context.Context, *grpc.ClientConn) error) (bool, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(g.creds()))
	if err != nil {
		return false, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	if g.apiKey != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "api_key", g.apiKey)
	}
	if err = fn(ctx, cc); err == nil {
		return true, nil
	}
	code := status.Code(err)
	if cc.GetState() != connectivity.Ready && (code == codes.Unavailable || code == codes.DeadlineExceeded) {
		return false, err
	}
	return true, err
}

// reachReason boils a dial failure down to its cause, "connection refused"
// rather than gRPC's layered wording.
func reachReason(err error, g *globals) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	if st.Code() == codes.DeadlineExceeded {
		return fmt.Sprintf("no answer within %s", g.timeout)
	}
	msg := strings.Trim(st.Message(), `"`)
	if strings.Contains(msg, "produced zero addresses") {
		return "host name not found"
	}
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return strings.Trim(msg, `" `)
}

// joinReasons says the cause once when every address failed the same way.
func joinReasons(reasons []string) string {
	if len(reasons) == 0 {
		return "no address given"
	}
	first := reasons[0][strings.Index(reasons[0], ": ")+2:]
	for _, r := range reasons[1:] {
		if r[strings.Index(r, ": ")+2:] != first {
			return strings.Join(reasons, "; ")
		}
	}
	return first
}

// defaultTimeout bounds each address's attempt; a leader election takes a
// few seconds, so this leaves room for one.
const defaultTimeout = 10 * time.Second
