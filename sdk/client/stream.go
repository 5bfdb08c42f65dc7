package client

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/internal/conn"
)

// sessionStream is one of a session's two long-lived streams.
type sessionStream interface {
	name() string
	// serve runs one stream on cc, opened to t, until it ends; established
	// reports that the stream was opened, reopened that an earlier one had
	// been.
	serve(ctx context.Context, cc *grpc.ClientConn, t conn.Target, reopened bool) (established bool, err error)
	// fail ends the stream's side of the session for good.
	fail(err error)
}

// lagWindow is how long after a stream broke a NotFound for the session is
// taken for a new leader that has not applied its whole log yet, rather
// than for a session that is gone.
const lagWindow = 10 * time.Second

// keepStream keeps k open on the leader until the session is detached,
// reopening it (after rediscovering the leader, with backoff) whenever it
// breaks, and giving up only on errors a new stream would meet again.
func (s *Session) keepStream(k sessionStream) {
	bo := conn.NewBackoff(s.c.opts.minBackoff, s.c.opts.maxBackoff)
	opened := false
	var broke time.Time // when a stream last broke
	for {
		if s.stopping() {
			return
		}
		cc, t, err := s.c.pool.LeaderTarget(s.ctx)
		if err == nil {
			start := time.Now()
			var established bool
			established, err = k.serve(s.ctx, cc, t, opened)
			opened = opened || established
			if s.stopping() {
				return
			}
			if established && time.Since(start) >= bo.Max {
				bo.Reset()
			}
			s.c.pool.Forget(t.Addr)
		}
		lagging := status.Code(err) == codes.NotFound && !broke.IsZero() && time.Since(broke) < lagWindow
		if errors.Is(err, conn.ErrClosed) || conn.Permanent(err) && !lagging {
			s.log.Warn("session stream ended for good", "stream", k.name(), "err", err)
			k.fail(err)
			return
		}
		if lagging {
			// The session existed on the old leader and a session is
			// never deleted without being closed first: the new leader
			// answered before catching up with its log.
			s.log.Warn("session not found right after a failover; retrying", "stream", k.name(), "err", err)
		} else if !conn.Permanent(err) {
			broke = time.Now()
		}
		d := bo.After(err)
		s.log.Log(s.ctx, retryLevel(err), "session stream broke; reconnecting", "stream", k.name(), "in", d, "err", err)
		select {
		case <-time.After(d):
		case <-s.draining:
		case <-s.ctx.Done():
		}
	}
}

// watched runs the stream that open starts, under a leader watch when the
// watch is on (WithLeaderWatch). open gets the stream's context, the
// function that cancels it and the watch's Heard (a no-op without a
// watch); it returns once the stream is over. When the watch abandoned
// the stream, its error replaces the stream's cancellation.
func (s *Session) watched(ctx context.Context, t conn.Target,
	open func(ctx context.Context, cancel context.CancelFunc, heard func()) (bool, error)) (bool, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := func() { cancel(nil) }
	if s.c.opts.watch < 0 {
		return open(ctx, stop, func() {})
	}
	w := s.c.pool.Watch(t, s.c.opts.watch, s.busy, cancel)
	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(wctx) })
	established, err := open(ctx, stop, w.Heard)
	wcancel()
	wg.Wait()
	if cause := context.Cause(ctx); errors.Is(cause, conn.ErrSuperseded) {
		err = cause
	}
	return established, err
}

// busy reports work outstanding on the session's streams: batches waiting
// for their acknowledgement or tasks waiting for their outcome.
func (s *Session) busy() bool { return s.out.len() > 0 || s.flow.len() > 0 }

// retryLevel keeps the polling during an election out of the Info log.
func retryLevel(err error) slog.Level {
	if errors.Is(err, conn.ErrNoLeader) {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

func (s *Session) stopping() bool {
	select {
	case <-s.draining:
		return true
	case <-s.ctx.Done():
		return true
	default:
		return false
	}
}

func (s *Session) outgoing(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, conn.MDSessionID, s.id)
}

// runStream runs send and recv on one stream: recv's error is the stream's
// fate; a send failure cancels the stream unless it is the io.EOF that
// means recv is about to report the real status.
func runStream(ctx context.Context, cancel context.CancelFunc,
	send func(context.Context) error, recv func() error) error {
	var sendErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		sendErr = send(ctx)
		if sendErr != nil && !errors.Is(sendErr, io.EOF) {
			cancel()
		}
	})
	err := recv()
	cancel()
	wg.Wait()
	if status.Code(err) == codes.Canceled && sendErr != nil && !errors.Is(sendErr, io.EOF) {
		return sendErr
	}
	return err
}

// maxAckIDs bounds the ids of one Ack message. Acks pile up while the
// sender is busy sending batches; the server refuses an Ack of more than
// its batch limit (10,000 ids by default) and ends the stream.
const maxAckIDs = 1000

// sendAcks sends the inbox's pending acks, at most maxAckIDs a message,
// putting back those not sent if a send fails so the next stream sends them.
func sendAcks[T any](in *inbox[T], send func(*griddpb.Ack) error) error {
	ids := in.takeAcks()
	for len(ids) > 0 {
		n := min(len(ids), maxAckIDs)
		if err := send(&griddpb.Ack{Ids: ids[:n:n]}); err != nil {
			in.restoreAcks(ids)
			return err
		}
		ids = ids[n:]
		in.lastAckSent.Store(time.Now().UnixNano())
	}
	return nil
}

// errDetached ends a stream's sender once Detach's last acks had their
// grace period.
var errDetached = errors.New("detached")

// ackGrace is how long a detaching stream stays open after its last ack.
// The protocol does not confirm acks, and the server drops the proposals
// of a stream that goes away; an ack sent this long ago has been proposed.
const ackGrace = 100 * time.Millisecond

// finish sends the last acks and half-closes the stream, keeps it open for
// ackGrace after the most recent ack, then ends it.
func finish[T any](ctx context.Context, st grpc.ClientStream, in *inbox[T],
	send func(*griddpb.Ack) error) error {
	if err := sendAcks(in, send); err != nil {
		return err
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	if wait := time.Until(time.Unix(0, in.lastAckSent.Load()).Add(ackGrace)); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return errDetached
}

// resultsStream is ClientStream: batches and acks out, submit acks and
// results in.
type resultsStream struct{ s *Session }

func (resultsStream) name() string { return "results" }

func (r resultsStream) fail(err error) {
	r.s.out.fail(err)
	r.s.results.end()
}

func (r resultsStream) serve(ctx context.Context, cc *grpc.ClientConn, t conn.Target, reopened bool) (bool, error) {
	s := r.s
	return s.watched(ctx, t, func(ctx context.Context, cancel context.CancelFunc, heard func()) (bool, error) {
		st, err := griddpb.NewQueueClient(cc).ClientStream(s.outgoing(ctx))
		if err != nil {
			return false, err
		}
		if reopened {
			s.reconnects.Add(1)
		}
		s.resent.Add(uint64(s.out.resendAll()))
		return true, runStream(ctx, cancel,
			func(ctx context.Context) error { return r.send(ctx, st) },
			func() error { return r.recv(st, heard) })
	})
}

func (r resultsStream) send(ctx context.Context, st griddpb.Queue_ClientStreamClient) error {
	s := r.s
	sendAck := func(a *griddpb.Ack) error {
		return st.Send(&griddpb.ClientMessage{Kind: &griddpb.ClientMessage_Ack{Ack: a}})
	}
	for {
		for _, p := range s.out.takeUnsent() {
			if err := st.Send(&griddpb.ClientMessage{Kind: &griddpb.ClientMessage_Submit{Submit: p.batch}}); err != nil {
				return err
			}
		}
		if err := sendAcks(s.results, sendAck); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.out.kick:
		case <-s.results.ackKick:
		case <-s.draining:
			return finish(ctx, st, s.results, sendAck)
		}
	}
}

func (r resultsStream) recv(st griddpb.Queue_ClientStreamClient, heard func()) error {
	for {
		m, err := st.Recv()
		if err != nil {
			return err
		}
		heard()
		switch k := m.GetKind().(type) {
		case *griddpb.ServerMessage_SubmitAck:
			r.s.settle(k.SubmitAck)
		case *griddpb.ServerMessage_Results:
			for _, msg := range k.Results.GetMessages() {
				r.s.results.push(msg.GetId(), Result{TaskID: msg.GetId(), Payload: msg.GetPayload(),
					Attempt: msg.GetAttempt()})
			}
		}
	}
}

// deadLetterStream is ClientStreamDeadLetters: acks out, dead letters in.
type deadLetterStream struct{ s *Session }

func (deadLetterStream) name() string { return "dead letters" }

func (d deadLetterStream) fail(error) { d.s.dead.end() }

func (d deadLetterStream) serve(ctx context.Context, cc *grpc.ClientConn, t conn.Target, _ bool) (bool, error) {
	s := d.s
	return s.watched(ctx, t, func(ctx context.Context, cancel context.CancelFunc, heard func()) (bool, error) {
		st, err := griddpb.NewQueueClient(cc).ClientStreamDeadLetters(s.outgoing(ctx))
		if err != nil {
			return false, err
		}
		return true, runStream(ctx, cancel,
			func(ctx context.Context) error { return d.send(ctx, st) },
			func() error { return d.recv(st, heard) })
	})
}

func (d deadLetterStream) send(ctx context.Context, st griddpb.Queue_ClientStreamDeadLettersClient) error {
	s := d.s
	sendAck := func(a *griddpb.Ack) error {
		return st.Send(&griddpb.DeadLetterStreamRequest{Kind: &griddpb.DeadLetterStreamRequest_Ack{Ack: a}})
	}
	for {
		if err := sendAcks(s.dead, sendAck); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.dead.ackKick:
		case <-s.draining:
			return finish(ctx, st, s.dead, sendAck)
		}
	}
}

func (d deadLetterStream) recv(st griddpb.Queue_ClientStreamDeadLettersClient, heard func()) error {
	for {
		b, err := st.Recv()
		if err != nil {
			return err
		}
		heard()
		for _, msg := range b.GetMessages() {
			errs := msg.GetErrors()
			if len(errs) == 0 && msg.GetError() != "" {
				errs = []string{msg.GetError()}
			}
			d.s.dead.push(msg.GetId(), DeadLetter{TaskID: msg.GetId(), Payload: msg.GetPayload(),
				Errors: errs, Attempts: msg.GetAttempt()})
		}
	}
}
