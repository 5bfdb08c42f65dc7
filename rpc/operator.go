package rpc

import (
	"context"

	"github.com/gridd/gridd/fsm/fsmpb"
	"github.com/gridd/gridd/rpc/griddpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// defaultDeadLetterLimit bounds ListDeadLetters when the caller sets none.
const defaultDeadLetterLimit = 1000

// ListDeadLetters shows a session's dead letters without consuming them:
// the client's ClientStreamDeadLetters still receives them.
func (s *Server) ListDeadLetters(ctx context.Context, req *griddpb.ListDeadLettersRequest) (*griddpb.ListDeadLettersResponse, error) {
	if conn, err := s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return nil, err
		}
		return griddpb.NewQueueClient(conn).ListDeadLetters(s.fwd.outgoing(ctx), req)
	}
	if err := s.checkApp(ctx, req.SessionId); err != nil {
		return nil, err
	}
	if err := validateID("session", req.SessionId); err != nil {
		return nil, toStatus(err)
	}
	if req.Limit < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "limit is negative (%d)", req.Limit)
	}
	if err := s.node.VerifyLeader(ctx); err != nil {
		return nil, toStatus(err)
	}
	info, ok := s.fsm.Session(req.SessionId)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "session %q not found", req.SessionId)
	}
	limit := int(req.Limit)
	if limit == 0 {
		limit = defaultDeadLetterLimit
	}
	out := &griddpb.ListDeadLettersResponse{Total: info.DeadLettersUnacked}
	for _, d := range s.fsm.DeadLettersAfter(req.SessionId, 0, limit) {
		var last string
		if len(d.Errors) > 0 {
			last = d.Errors[len(d.Errors)-1]
		}
		out.DeadLetters = append(out.DeadLetters, &griddpb.Message{Id: d.TaskID, Payload: d.Payload,
			Error: last, Errors: d.Errors, Attempt: d.Attempts})
	}
	return out, nil
}

// RetryDeadLetters requeues dead letters with a fresh attempt budget.
func (s *Server) RetryDeadLetters(ctx context.Context, req *griddpb.RetryDeadLettersRequest) (*griddpb.RetryDeadLettersResponse, error) {
	if conn, err := s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return nil, err
		}
		return griddpb.NewQueueClient(conn).RetryDeadLetters(s.fwd.outgoing(ctx), req)
	}
	if err := s.checkApp(ctx, req.SessionId); err != nil {
		return nil, err
	}
	if err := s.validateDeadLetterIDs(req.SessionId, req.Ids); err != nil {
		return nil, err
	}
	resp, err := s.propose(ctx, &fsmpb.Command{RequestId: req.RequestId, Cmd: &fsmpb.Command_RetryDeadLetters{
		RetryDeadLetters: &fsmpb.RetryDeadLetters{SessionId: req.SessionId, TaskIds: req.Ids, All: len(req.Ids) == 0},
	}})
	if err != nil {
		return nil, toStatus(err)
	}
	return &griddpb.RetryDeadLettersResponse{Retried: uint32(resp.Requeued)}, nil
}

// PurgeDeadLetters drops dead letters as if the client acknowledged them.
func (s *Server) PurgeDeadLetters(ctx context.Context, req *griddpb.PurgeDeadLettersRequest) (*griddpb.PurgeDeadLettersResponse, error) {
	if conn, err := s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return nil, err
		}
		return griddpb.NewQueueClient(conn).PurgeDeadLetters(s.fwd.outgoing(ctx), req)
	}
	if err := s.checkApp(ctx, req.SessionId); err != nil {
		return nil, err
	}
	if err := s.validateDeadLetterIDs(req.SessionId, req.Ids); err != nil {
		return nil, err
	}
	info, ok := s.fsm.Session(req.SessionId)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "session %q not found", req.SessionId)
	}
	if info.Closed {
		return nil, status.Errorf(codes.FailedPrecondition, "session %q is closed: its dead letters are already gone", req.SessionId)
	}
	ids := req.Ids
	if len(ids) == 0 {
		for _, d := range s.fsm.DeadLettersAfter(req.SessionId, 0, 0) {
			ids = append(ids, d.TaskID)
		}
	}
	var purged int
	// Acks are idempotent, so a purge in several entries is safe to retry.
	for start := 0; start < len(ids); start += s.limits.MaxBatchTasks {
		chunk := ids[start:min(start+s.limits.MaxBatchTasks, len(ids))]
		resp, err := s.propose(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_AckDeadLetters{
			AckDeadLetters: &fsmpb.Ack{SessionId: req.SessionId, TaskIds: chunk}}})
		if err != nil {
			return nil, toStatus(err)
		}
		purged += resp.Acked
	}
	return &griddpb.PurgeDeadLettersResponse{Purged: uint32(purged)}, nil
}

func (s *Server) validateDeadLetterIDs(session string, ids []string) error {
	if err := validateID("session", session); err != nil {
		return toStatus(err)
	}
	if len(ids) > s.limits.MaxBatchTasks {
		return status.Errorf(codes.InvalidArgument, "%d ids; the limit is %d: split the request", len(ids), s.limits.MaxBatchTasks)
	}
	for _, id := range ids {
		if err := validateID("task", id); err != nil {
			return toStatus(err)
		}
	}
	return nil
}

// ListWorkers lists the workers connected to the leader.
func (s *Server) ListWorkers(ctx context.Context, req *griddpb.ListWorkersRequest) (*griddpb.ListWorkersResponse, error) {
	if conn, err := s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return nil, err
		}
		return griddpb.NewQueueClient(conn).ListWorkers(s.fwd.outgoing(ctx), req)
	}
	out := &griddpb.ListWorkersResponse{}
	for _, w := range s.disp.Workers() {
		if !s.workerVisible(ctx, w.Session) {
			continue
		}
		out.Workers = append(out.Workers, &griddpb.WorkerInfo{Id: w.ID, Node: w.Node, Pod: w.Pod,
			SessionId: w.Session, Running: uint32(w.Running), ConnectedUnixMs: w.Connected.UnixMilli(),
			Registered: w.Registered})
	}
	return out, nil
}
