package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/fsm/fsmpb"
	"github.com/hashicorp/raft"
)

// Propose replicates cmd and returns the FSM's response once it is
// committed and applied here. Errors: ErrNotLeader (not submitted),
// ErrUnknownOutcome (submitted, fate unknown: retry with the same
// idempotency key), ErrClosed, or context.DeadlineExceeded wrapped when the
// command could not even be submitted in time. A context without a deadline
// is bounded by Config.ApplyTimeout.
func (n *Node) Propose(ctx context.Context, cmd *fsmpb.Command) (fsm.Response, error) {
	data, err := fsm.EncodeCommand(cmd)
	if err != nil {
		return fsm.Response{}, fmt.Errorf("cluster: encode command: %w", err)
	}
	return n.ProposeBytes(ctx, data)
}

// ProposeBytes is Propose for a command already encoded with
// fsm.EncodeCommand, for callers that forward entries verbatim. Bytes that
// do not decode would stop every node, so they must come from EncodeCommand.
func (n *Node) ProposeBytes(ctx context.Context, data []byte) (fsm.Response, error) {
	leave, err := n.enter()
	if err != nil {
		return fsm.Response{}, err
	}
	defer leave()
	ctx, cancel := n.raftCtx(ctx)
	defer cancel()
	timeout, err := submitTimeout(ctx)
	if err != nil {
		return fsm.Response{}, fmt.Errorf("cluster: propose not submitted: %w", err)
	}
	// Concurrent calls reach raft's leader loop together and share one disk
	// write; no lock may be held across Apply or that batching is lost.
	start := time.Now()
	fut := n.raft.Apply(data, timeout)
	if err := n.await(ctx, fut); err != nil {
		return fsm.Response{}, writeErr("propose", err)
	}
	n.cfg.observer().ObserveApply(time.Since(start))
	resp, ok := fut.Response().(fsm.Response)
	if !ok {
		return fsm.Response{}, fmt.Errorf("cluster: propose: unexpected fsm response %T", fut.Response())
	}
	return resp, nil
}

// Barrier waits until the FSM has applied every entry committed before the
// call. Leader only.
func (n *Node) Barrier(ctx context.Context) error {
	leave, err := n.enter()
	if err != nil {
		return err
	}
	defer leave()
	ctx, cancel := n.raftCtx(ctx)
	defer cancel()
	timeout, err := submitTimeout(ctx)
	if err != nil {
		return fmt.Errorf("cluster: barrier: %w", err)
	}
	return leaderErr("barrier", n.await(ctx, n.raft.Barrier(timeout)))
}

// VerifyLeader confirms with a quorum that this node is still the leader,
// for linearizable reads.
func (n *Node) VerifyLeader(ctx context.Context) error {
	leave, err := n.enter()
	if err != nil {
		return err
	}
	defer leave()
	ctx, cancel := n.raftCtx(ctx)
	defer cancel()
	return leaderErr("verify leader", n.await(ctx, n.raft.VerifyLeader()))
}

// Snapshot takes a snapshot now and compacts the log. Having nothing new to
// snapshot is not an error.
func (n *Node) Snapshot() error {
	if n.closed.Load() {
		return ErrClosed
	}
	err := n.raft.Snapshot().Error()
	switch {
	case err == nil, errors.Is(err, raft.ErrNothingNewToSnapshot):
		return nil
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	default:
		return fmt.Errorf("cluster: snapshot: %w", err)
	}
}

// enter admits a leader-only call. The caller defers leave, so that Close
// can let calls in flight finish before raft stops.
func (n *Node) enter() (leave func(), err error) {
	if !n.calls.enter() {
		return nil, ErrClosed
	}
	if n.raft.State() != raft.Leader {
		n.calls.leave()
		return nil, ErrNotLeader
	}
	return n.calls.leave, nil
}

// submitTimeout is how long raft may take to accept a request: what is
// left of ctx, which raftCtx gave a deadline. raft reads zero as forever.
func submitTimeout(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	deadline, _ := ctx.Deadline()
	if d := time.Until(deadline); d > 0 {
		return d, nil
	}
	return 0, context.DeadlineExceeded
}

// leaderErr maps the errors of leader-only operations whose loss of
// leadership leaves nothing uncertain (they write no state).
func leaderErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return ErrNotLeader
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	default:
		return fmt.Errorf("cluster: %s: %w", op, err)
	}
}

// await waits for fut respecting ctx. raft futures have no channel, so a
// goroutine waits on Error; it ends when raft responds, which it does for
// every future at the latest when leadership ends or raft shuts down.
func (n *Node) await(ctx context.Context, fut raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- fut.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stop:
		// raft never answers a command it committed but had not yet
		// handed to the FSM when it shut down, so do not wait for it.
		// The goroutine above then stays blocked: a bounded leak, and
		// only Kill can cause it, since Close drains calls first.
		return raft.ErrRaftShutdown
	}
}

// ProposeAsync submits cmd and returns once raft has taken it, with a
// function that waits for its outcome (the errors of Propose). Calls made
// one after another from one goroutine reach the log in that order, so a
// caller can keep several dependent entries in flight (the chunks of a
// shared data upload) without losing their order. The caller must call
// wait exactly once.
func (n *Node) ProposeAsync(ctx context.Context, cmd *fsmpb.Command) (wait func() (fsm.Response, error), err error) {
	data, err := fsm.EncodeCommand(cmd)
	if err != nil {
		return nil, fmt.Errorf("cluster: encode command: %w", err)
	}
	leave, err := n.enter()
	if err != nil {
		return nil, err
	}
	ctx, cancel := n.raftCtx(ctx)
	timeout, err := submitTimeout(ctx)
	if err != nil {
		cancel()
		leave()
		return nil, fmt.Errorf("cluster: propose not submitted: %w", err)
	}
	fut := n.raft.Apply(data, timeout)
	return func() (fsm.Response, error) {
		defer leave()
		defer cancel()
		if err := n.await(ctx, fut); err != nil {
			return fsm.Response{}, writeErr("propose", err)
		}
		resp, ok := fut.Response().(fsm.Response)
		if !ok {
			return fsm.Response{}, fmt.Errorf("cluster: propose: unexpected fsm response %T", fut.Response())
		}
		return resp, nil
	}, nil
}
