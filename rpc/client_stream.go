package rpc

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/gridd/gridd/dispatch"
	"github.com/gridd/gridd/fsm/fsmpb"
	"github.com/gridd/gridd/rpc/griddpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// maxProposalsPerStream bounds the batches of one stream waiting for their
// commit; a client that submits faster waits on its stream (backpressure).
const maxProposalsPerStream = 64

// resultsPerMessage bounds the results sent in one message to a client.
const resultsPerMessage = 1000

// streamSession reads and checks the sessionid header of a stream.
func (s *Server) streamSession(ctx context.Context) (string, error) {
	sid := mdValue(ctx, "sessionid")
	if sid == "" {
		return "", status.Error(codes.InvalidArgument, "missing the sessionid metadata header: set it to the session's id")
	}
	if err := validateID("session", sid); err != nil {
		return "", toStatus(err)
	}
	info, ok := s.fsm.Session(sid)
	if !ok || !sessionVisible(ctx, info.App) {
		return "", status.Errorf(codes.NotFound, "session %q not found", sid)
	}
	if info.Closed {
		return "", status.Errorf(codes.FailedPrecondition, "session %q is closed", sid)
	}
	return sid, nil
}

// pump is the shared skeleton of the streams: one goroutine receives,
// proposals run concurrently (bounded), and only the handler's goroutine
// sends, because a gRPC stream allows one sender at a time.
type pump struct {
	ctx    context.Context
	cancel context.CancelFunc
	out    chan proto.Message
	sem    chan struct{}

	wg sync.WaitGroup // proposals under way

	mu     sync.Mutex
	err    error
	failed bool
}

func newPump(parent context.Context) *pump {
	ctx, cancel := context.WithCancel(parent)
	return &pump{ctx: ctx, cancel: cancel, out: make(chan proto.Message, 256),
		sem: make(chan struct{}, maxProposalsPerStream)}
}

// fail ends the stream with err (the first error wins; nil ends it
// cleanly).
func (p *pump) fail(err error) {
	p.mu.Lock()
	if !p.failed {
		p.err, p.failed = err, true
	}
	p.mu.Unlock()
	p.cancel()
}

// result is how the stream ends once p.ctx is done: the recorded error, or
// why the server ended it.
func (p *pump) result(streamCtx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed {
		return p.err
	}
	return streamEnded(streamCtx)
}

// send queues m for the handler's goroutine.
func (p *pump) send(m proto.Message) {
	select {
	case p.out <- m:
	case <-p.ctx.Done():
	}
}

// async runs f as a bounded proposal.
func (p *pump) async(f func()) {
	select {
	case p.sem <- struct{}{}:
	case <-p.ctx.Done():
		return
	}
	p.wg.Add(1)
	go func() {
		defer func() { <-p.sem; p.wg.Done() }()
		f()
	}()
}

// isRetryable reports statuses after which the client must reconnect and
// resend rather than give up: leadership moved or the outcome is unknown.
func isRetryable(err error) bool {
	c := status.Code(err)
	return c == codes.Unavailable || c == codes.Canceled || c == codes.DeadlineExceeded
}

// ClientStream carries a session's task batches and result acknowledgements
// from the client, and submit acknowledgements and results to it.
func (s *Server) ClientStream(stream griddpb.Queue_ClientStreamServer) error {
	ctx := stream.Context()
	if conn, err := s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return err
		}
		return s.fwd.forwardStream(stream, conn, griddpb.Queue_ClientStream_FullMethodName,
			func() proto.Message { return new(griddpb.ClientMessage) },
			func() proto.Message { return new(griddpb.ServerMessage) })
	}
	sid, err := s.streamSession(ctx)
	if err != nil {
		return err
	}
	notify, cctx, release, err := s.disp.ClaimClient(ctx, sid, dispatch.KindResults)
	if err != nil {
		return toStatus(err)
	}
	defer release()
	p := newPump(cctx)
	defer p.cancel()
	early := newEarlyResults()
	defer s.flushHeldAcks(sid, early)
	go s.receiveClient(stream, sid, p, early)
	var cursor uint64
	send := func(msgs []*griddpb.Message) error {
		return stream.Send(&griddpb.ServerMessage{Kind: &griddpb.ServerMessage_Results{
			Results: &griddpb.Batch{SessionId: sid, Messages: msgs}}})
	}
	for {
		select {
		case <-p.ctx.Done():
			return p.result(ctx)
		case m := <-p.out:
			if err := stream.Send(m.(*griddpb.ServerMessage)); err != nil {
				return err
			}
		case <-notify:
			if err := s.sendEarly(sid, notify, early, send); err != nil {
				return err
			}
			var err error
			if cursor, err = s.sendCommitted(p, sid, cursor, early, send); err != nil {
				return err
			}
		}
	}
}

// flushHeldAcks proposes, as the stream ends, the acknowledgements it held
// back for early results whose commit it had not seen yet but which are
// committed by now. Without it, a client that acknowledges and detaches at
// once (Session.Detach flushes its acks, then ends the stream) would find
// those results again on its next stream, which remembers nothing of the
// first one. Results still not committed keep their held ack dropped: an
// ack ahead of its result would be ignored, and the result comes again.
func (s *Server) flushHeldAcks(sid string, early *earlyResults) {
	ids := early.heldAcked()
	if len(ids) == 0 {
		return
	}
	st, ok := s.fsm.TaskStatuses(sid, ids)
	if !ok {
		return
	}
	var done []string
	for _, t := range st {
		if t.State == fsmpb.TaskState_TASK_STATE_COMPLETED {
			done = append(done, t.ID)
		}
	}
	if len(done) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.propose(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_AckResults{AckResults: &fsmpb.Ack{
		SessionId: sid, TaskIds: done}}}); err != nil {
		s.log.Debug("acknowledgements held for early results not recorded as the stream ended", "session", sid,
			"results", len(done), "err", err)
	}
}

// sendEarly sends the results workers returned that are not committed yet.
// A result whose task is no longer pending was committed meanwhile: the
// committed path sends it (or already did).
func (s *Server) sendEarly(sid string, notify <-chan struct{}, early *earlyResults, send func([]*griddpb.Message) error) error {
	msgs := s.disp.TakeEarly(sid, notify)
	if len(msgs) == 0 {
		return nil
	}
	pending := msgs[:0]
	for _, m := range msgs {
		if s.fsm.TaskPending(sid, m.Id) {
			pending = append(pending, m)
		}
	}
	if fresh := early.add(pending); len(fresh) > 0 {
		return send(fresh)
	}
	return nil
}

// sendCommitted sends the committed results after cursor that were not
// sent early, proposes the acknowledgements held back for early ones, and
// returns the new cursor.
func (s *Server) sendCommitted(p *pump, sid string, cursor uint64, early *earlyResults, send func([]*griddpb.Message) error) (uint64, error) {
	var heldAcks []string
	for {
		rs := s.fsm.ResultsAfter(sid, cursor, resultsPerMessage)
		if len(rs) == 0 {
			break
		}
		msgs := make([]*griddpb.Message, 0, len(rs))
		for _, r := range rs {
			if sentEarly, acked := early.committed(r.TaskID); sentEarly {
				if acked {
					heldAcks = append(heldAcks, r.TaskID)
				}
				continue
			}
			msgs = append(msgs, &griddpb.Message{Id: r.TaskID, Payload: r.Payload, Attempt: r.Attempt})
		}
		cursor = rs[len(rs)-1].Seq
		if len(msgs) > 0 {
			if err := send(msgs); err != nil {
				return cursor, err
			}
		}
	}
	if len(heldAcks) > 0 {
		p.async(func() {
			s.ack(p, &fsmpb.Command{Cmd: &fsmpb.Command_AckResults{AckResults: &fsmpb.Ack{SessionId: sid, TaskIds: heldAcks}}})
		})
	}
	return cursor, nil
}

// streamEnded explains why the server ended a stream: the client must
// reconnect (to the new leader, or it was replaced by its own newer stream).
func streamEnded(ctx context.Context) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return status.Error(codes.Unavailable, "stream ended by the server: a newer stream of this session took over, the session closed, or leadership moved; reconnect")
}

func (s *Server) receiveClient(stream griddpb.Queue_ClientStreamServer, sid string, p *pump, early *earlyResults) {
	for {
		m, err := stream.Recv()
		if err != nil {
			// After a half-close the client still reads its results, so
			// only a real error ends the stream.
			if !errors.Is(err, io.EOF) {
				p.fail(err)
			}
			return
		}
		switch k := m.Kind.(type) {
		case *griddpb.ClientMessage_Submit:
			b := k.Submit
			p.async(func() {
				ack := s.submit(p.ctx, sid, b)
				if ack == nil {
					p.fail(status.Error(codes.Unavailable, "the batch could not be committed (leadership moved?): reconnect and resend"))
					return
				}
				p.send(&griddpb.ServerMessage{Kind: &griddpb.ServerMessage_SubmitAck{SubmitAck: ack}})
			})
		case *griddpb.ClientMessage_Ack:
			a := k.Ack
			if err := ValidateAcks(s.limits, a); err != nil {
				p.fail(toStatus(err))
				return
			}
			ids := early.holdAcks(a.Ids)
			if len(ids) == 0 {
				continue
			}
			p.async(func() {
				s.ack(p, &fsmpb.Command{Cmd: &fsmpb.Command_AckResults{AckResults: &fsmpb.Ack{SessionId: sid, TaskIds: ids}}})
			})
		default:
			p.fail(status.Error(codes.InvalidArgument, "empty client message: set submit or ack"))
			return
		}
	}
}

// submit proposes one batch and returns its acknowledgement. A retryable
// failure ends the stream instead: the client reconnects and resends the
// batch, which the state machine deduplicates by task id.
func (s *Server) submit(ctx context.Context, sid string, b *griddpb.Batch) *griddpb.SubmitAck {
	ack := &griddpb.SubmitAck{Seq: b.GetSeq()}
	if err := ValidateBatch(s.limits, sid, b); err != nil {
		st := status.Convert(toStatus(err))
		ack.Code, ack.Message = int32(st.Code()), st.Message()
		return ack
	}
	release, err := s.admitBatch(sid, b)
	if err != nil {
		// Over the limit: nothing is proposed. ResourceExhausted tells the
		// SDK to send the same batch again later.
		st := status.Convert(err)
		ack.Code, ack.Message = int32(st.Code()), st.Message()
		return ack
	}
	defer release()
	tasks := make([]*fsmpb.Task, len(b.Messages))
	for i, m := range b.Messages {
		prio := m.Priority
		if prio == 0 {
			prio = b.Priority
		}
		tasks[i] = &fsmpb.Task{Id: m.Id, Payload: m.Payload, Priority: prio}
	}
	cmd := &fsmpb.Command{Cmd: &fsmpb.Command_Enqueue{Enqueue: &fsmpb.Enqueue{
		SessionId: sid, Tasks: tasks, UseSharedData: b.UseSharedData,
		RequiredSharedDataUpdateLevel: b.RequiredSharedDataUpdateLevel,
	}}}
	if plantAckBeforeCommit {
		// The planted bug (see plant_off.go): acknowledge, then propose.
		go func() { _, _ = s.propose(context.Background(), cmd) }()
		ack.Accepted = uint32(len(tasks))
		return ack
	}
	resp, err := s.propose(ctx, cmd)
	if err != nil {
		st := toStatus(err)
		if isRetryable(st) {
			s.log.DebugContext(ctx, "submit not committed; ending the stream so the client resends", "session", sid, "err", err)
			return nil
		}
		sst := status.Convert(st)
		ack.Code, ack.Message = int32(sst.Code()), sst.Message()
		return ack
	}
	ack.Accepted, ack.Duplicates = uint32(resp.Accepted), uint32(resp.Duplicates)
	return ack
}

func (s *Server) ack(p *pump, cmd *fsmpb.Command) {
	if _, err := s.propose(p.ctx, cmd); err != nil {
		if st := toStatus(err); isRetryable(st) {
			p.fail(st)
		}
		// Other errors (session closed meanwhile) leave nothing to drop.
	}
}

// ClientStreamDeadLetters streams a session's dead letters and takes their
// acknowledgements.
func (s *Server) ClientStreamDeadLetters(stream griddpb.Queue_ClientStreamDeadLettersServer) error {
	ctx := stream.Context()
	if conn, err := s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return err
		}
		return s.fwd.forwardStream(stream, conn, griddpb.Queue_ClientStreamDeadLetters_FullMethodName,
			func() proto.Message { return new(griddpb.DeadLetterStreamRequest) },
			func() proto.Message { return new(griddpb.DeadLetterBatch) })
	}
	sid, err := s.streamSession(ctx)
	if err != nil {
		return err
	}
	notify, cctx, release, err := s.disp.ClaimClient(ctx, sid, dispatch.KindDeadLetters)
	if err != nil {
		return toStatus(err)
	}
	defer release()
	p := newPump(cctx)
	defer p.cancel()
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					p.fail(err)
				}
				return
			}
			a := m.GetAck()
			if err := ValidateAcks(s.limits, a); err != nil {
				p.fail(toStatus(err))
				return
			}
			p.async(func() {
				s.ack(p, &fsmpb.Command{Cmd: &fsmpb.Command_AckDeadLetters{AckDeadLetters: &fsmpb.Ack{SessionId: sid, TaskIds: a.Ids}}})
			})
		}
	}()
	var cursor uint64
	for {
		select {
		case <-p.ctx.Done():
			return p.result(ctx)
		case <-notify:
			for {
				dls := s.fsm.DeadLettersAfter(sid, cursor, resultsPerMessage)
				if len(dls) == 0 {
					break
				}
				b := &griddpb.DeadLetterBatch{SessionId: sid, Messages: make([]*griddpb.Message, len(dls))}
				for i, d := range dls {
					var last string
					if len(d.Errors) > 0 {
						last = d.Errors[len(d.Errors)-1]
					}
					b.Messages[i] = &griddpb.Message{Id: d.TaskID, Payload: d.Payload, Error: last,
						Errors: d.Errors, Attempt: d.Attempts}
				}
				cursor = dls[len(dls)-1].Seq
				if err := stream.Send(b); err != nil {
					return err
				}
			}
		}
	}
}
