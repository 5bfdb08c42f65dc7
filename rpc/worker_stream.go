package rpc

import (
	"errors"
	"io"
	"math/rand/v2"

	"github.com/gridd/gridd/dispatch"
	"github.com/gridd/gridd/fsm/fsmpb"
	"github.com/gridd/gridd/rpc/griddpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// WorkerUpdate registers a worker, takes its periodic status reports, and
// sends it BIND and UNBIND instructions.
func (s *Server) WorkerUpdate(stream griddpb.Queue_WorkerUpdateServer) error {
	ctx := stream.Context()
	if conn, err := s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return err
		}
		return s.fwd.forwardStream(stream, conn, griddpb.Queue_WorkerUpdate_FullMethodName,
			func() proto.Message { return new(griddpb.WorkerStatus) },
			func() proto.Message { return new(griddpb.Instruction) })
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	id := mdValue(ctx, "workerid")
	if id == "" {
		id = first.WorkerId
	}
	if err := validateID("worker", id); err != nil {
		return status.Errorf(codes.InvalidArgument, "%v: set the workerid metadata header or WorkerStatus.worker_id", err)
	}
	w, wctx, err := s.disp.RegisterWorker(ctx, id, first.Node, first.Pod)
	if err != nil {
		return toStatus(err)
	}
	defer s.disp.UnregisterWorker(w)
	s.disp.WorkerReport(w, first)
	errc := make(chan error, 1)
	go func() {
		for {
			// The leader tracks bindings itself; reports tell it which
			// workers are draining and which never received a BIND.
			m, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				errc <- err
				return
			}
			s.disp.WorkerReport(w, m)
		}
	}()
	for {
		select {
		case <-wctx.Done():
			return streamEnded(ctx)
		case err := <-errc:
			return err
		case in := <-w.Instructions():
			if err := stream.Send(in); err != nil {
				return err
			}
		}
	}
}

// WorkerStream sends a bound worker batches of its session's tasks and
// records the results it sends back.
func (s *Server) WorkerStream(stream griddpb.Queue_WorkerStreamServer) error {
	ctx := stream.Context()
	if conn, err := s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return err
		}
		return s.fwd.forwardStream(stream, conn, griddpb.Queue_WorkerStream_FullMethodName,
			func() proto.Message { return new(griddpb.WorkerStreamMessage) },
			func() proto.Message { return new(griddpb.Batch) })
	}
	wid := mdValue(ctx, "workerid")
	if err := validateID("worker", wid); err != nil {
		return status.Errorf(codes.InvalidArgument, "%v: set the workerid metadata header", err)
	}
	sid, err := s.streamSession(ctx)
	if err != nil {
		return err
	}
	st, sctx, err := s.disp.OpenStream(ctx, wid, sid)
	if err != nil {
		return toStatus(err)
	}
	defer s.disp.CloseStream(st)
	p := newPump(sctx)
	defer p.cancel()
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					// The worker is done with this session (unbound or
					// draining): record its last results before ending.
					p.wg.Wait()
					err = nil
				}
				p.fail(err)
				return
			}
			if ids := m.GetExtendLease(); len(ids) > 0 {
				if err := ValidateExtendLease(s.limits, ids); err != nil {
					p.fail(toStatus(err))
					return
				}
				s.disp.ExtendLease(st, ids)
				if m.GetResults() == nil {
					continue
				}
			}
			b := m.GetResults()
			if err := ValidateResults(s.limits, sid, b); err != nil {
				p.fail(toStatus(err))
				return
			}
			// The worker was told to stop these attempts and that their
			// results would be ignored.
			msgs := s.disp.DropStopped(st, b.Messages)
			if len(msgs) == 0 {
				continue
			}
			b = &griddpb.Batch{SessionId: b.SessionId, Messages: msgs}
			// Results go to the client before their commit; the client's
			// acknowledgements are held until the commit (see early.go).
			s.disp.EarlyResults(st, b.Messages)
			p.async(func() { s.recordOutcomes(p, sid, b) })
		}
	}()
	for {
		b, err := s.disp.Next(p.ctx, st)
		if err != nil {
			if p.ctx.Err() == nil {
				p.fail(toStatus(err))
			}
			return p.result(ctx)
		}
		if exp := s.disp.TakeExpired(st); len(exp) > 0 {
			p.async(func() { s.recordExpired(p, sid, exp) })
		}
		if err := stream.Send(b); err != nil {
			return err
		}
	}
}

// recordExpired proposes leases that ran out as failed attempts. If the
// proposal fails the task stays held until the stream ends, then it is
// ready again without counting an attempt.
func (s *Server) recordExpired(p *pump, sid string, exp []dispatch.LeaseExpiry) {
	outs := make([]*fsmpb.Outcome, len(exp))
	for i, e := range exp {
		outs[i] = &fsmpb.Outcome{TaskId: e.TaskID, Error: e.Error(), TimedOut: true, Jitter: uint32(rand.IntN(1001))}
	}
	_, err := s.propose(p.ctx, &fsmpb.Command{Cmd: &fsmpb.Command_Outcomes{Outcomes: &fsmpb.Outcomes{
		SessionId: sid, Outcomes: outs,
	}}})
	if err != nil {
		if st := toStatus(err); isRetryable(st) {
			p.fail(st)
			return
		}
		s.log.WarnContext(p.ctx, "timed-out attempts not recorded", "session", sid, "tasks", len(exp), "err", err)
	}
}

// recordOutcomes proposes a worker's results and failures as one entry. A
// task whose outcome does not commit stays pending: the next leader, or
// this one after the worker's stream ends, dispatches it again.
func (s *Server) recordOutcomes(p *pump, sid string, b *griddpb.Batch) {
	outs := make([]*fsmpb.Outcome, len(b.Messages))
	for i, m := range b.Messages {
		outs[i] = &fsmpb.Outcome{TaskId: m.Id, Payload: m.Payload, Error: m.Error}
		if m.Error != "" {
			// The leader draws the retry jitter so that replicas agree.
			outs[i].Jitter = uint32(rand.IntN(1001))
		}
	}
	_, err := s.propose(p.ctx, &fsmpb.Command{Cmd: &fsmpb.Command_Outcomes{Outcomes: &fsmpb.Outcomes{
		SessionId: sid, Outcomes: outs,
	}}})
	if err != nil {
		if st := toStatus(err); isRetryable(st) {
			p.fail(st)
			return
		}
		s.log.WarnContext(p.ctx, "results not recorded", "session", sid, "err", err)
	}
}
