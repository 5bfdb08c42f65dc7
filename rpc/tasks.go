package rpc

import (
	"context"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/fsm/fsmpb"
	"github.com/gridd/gridd/rpc/griddpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Bounds of the task calls: a CancelTasks request is one log entry, and a
// GetTasks answer is read under the state machine's lock.
const (
	MaxCancelIDs = 10_000
	MaxGetIDs    = 1_000
)

// CancelTasks cancels tasks by id, or every task of the session without an
// outcome. The dispatcher learns of it from the state machine and tells the
// workers holding them to stop; their late results are ignored. A retry
// with the same request_id is answered from the first call.
func (s *Server) CancelTasks(ctx context.Context, req *griddpb.CancelTasksRequest) (*griddpb.CancelTasksResponse, error) {
	if conn, err := s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return nil, err
		}
		return griddpb.NewQueueClient(conn).CancelTasks(s.fwd.outgoing(ctx), req)
	}
	if err := s.checkApp(ctx, req.SessionId); err != nil {
		return nil, err
	}
	if err := validateCancel(req); err != nil {
		return nil, toStatus(err)
	}
	resp, err := s.propose(ctx, &fsmpb.Command{RequestId: req.RequestId, Cmd: &fsmpb.Command_CancelTasks{
		CancelTasks: &fsmpb.CancelTasks{SessionId: req.SessionId, TaskIds: req.Ids, All: req.All},
	}})
	if err != nil {
		return nil, toStatus(err)
	}
	return &griddpb.CancelTasksResponse{Cancelled: uint32(resp.Cancelled)}, nil
}

func validateCancel(req *griddpb.CancelTasksRequest) error {
	if err := validateID("session", req.SessionId); err != nil {
		return err
	}
	if len(req.RequestId) > fsm.MaxTaskIDLen {
		return invalidf("request_id is %d bytes long; the limit is %d", len(req.RequestId), fsm.MaxTaskIDLen)
	}
	switch {
	case req.All && len(req.Ids) > 0:
		return invalidf("give task ids or all, not both")
	case !req.All && len(req.Ids) == 0:
		return invalidf("no task to cancel: give task ids, or all to cancel every task of the session")
	case len(req.Ids) > MaxCancelIDs:
		return invalidf("%d task ids; the limit is %d: split the request", len(req.Ids), MaxCancelIDs)
	}
	for i, id := range req.Ids {
		if err := validateID("task", id); err != nil {
			return invalidf("id %d: %v", i, err)
		}
	}
	return nil
}

// GetTasks reports the state of tasks by id. It runs on the leader, after
// it confirms its leadership, because only the leader's dispatcher knows
// which tasks are running and on which worker.
func (s *Server) GetTasks(ctx context.Context, req *griddpb.GetTasksRequest) (*griddpb.GetTasksResponse, error) {
	if conn, err := s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return nil, err
		}
		return griddpb.NewQueueClient(conn).GetTasks(s.fwd.outgoing(ctx), req)
	}
	if err := s.checkApp(ctx, req.SessionId); err != nil {
		return nil, err
	}
	if err := validateGet(req); err != nil {
		return nil, toStatus(err)
	}
	if err := s.node.VerifyLeader(ctx); err != nil {
		return nil, toStatus(err)
	}
	info, ok := s.fsm.Session(req.SessionId)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "session %q not found", req.SessionId)
	}
	if info.Closed {
		return nil, status.Errorf(codes.FailedPrecondition, "session %q is closed: its tasks are gone", req.SessionId)
	}
	// Holders first, then statuses: a task that gets its outcome in between
	// reads as completed (its holder is ignored), and one dispatched in
	// between reads as pending, which it was a moment ago. The other order
	// would show a task that just finished as pending.
	holders := s.disp.Holders(req.SessionId, req.Ids)
	sts, ok := s.fsm.TaskStatuses(req.SessionId, req.Ids)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "session %q not found", req.SessionId)
	}
	out := &griddpb.GetTasksResponse{Tasks: make([]*griddpb.TaskInfo, len(sts))}
	for i, st := range sts {
		ti := &griddpb.TaskInfo{Id: st.ID, Attempts: st.Attempts, Errors: st.Errors,
			NotBeforeUnixMs: st.NotBeforeUnixMs}
		ti.State = publicState(st, holders[st.ID])
		if ti.State == griddpb.TaskState_TASK_STATE_RUNNING {
			ti.WorkerId = holders[st.ID]
		}
		out.Tasks[i] = ti
	}
	return out, nil
}

func validateGet(req *griddpb.GetTasksRequest) error {
	if err := validateID("session", req.SessionId); err != nil {
		return err
	}
	if n := len(req.Ids); n == 0 || n > MaxGetIDs {
		return invalidf("%d task ids; give 1 to %d", n, MaxGetIDs)
	}
	for i, id := range req.Ids {
		if err := validateID("task", id); err != nil {
			return invalidf("id %d: %v", i, err)
		}
	}
	return nil
}

// publicState folds the replicated state and the dispatcher's view into
// the API's TaskState. worker is the holder of the task, "" if none.
func publicState(st fsm.TaskStatus, worker string) griddpb.TaskState {
	switch st.State {
	case fsmpb.TaskState_TASK_STATE_PENDING:
		switch {
		case worker != "":
			return griddpb.TaskState_TASK_STATE_RUNNING
		case st.Attempts > 0:
			return griddpb.TaskState_TASK_STATE_FAILED
		}
		return griddpb.TaskState_TASK_STATE_PENDING
	case fsmpb.TaskState_TASK_STATE_COMPLETED, fsmpb.TaskState_TASK_STATE_COMPLETED_ACKED:
		return griddpb.TaskState_TASK_STATE_COMPLETED
	case fsmpb.TaskState_TASK_STATE_DEAD, fsmpb.TaskState_TASK_STATE_DEAD_ACKED:
		return griddpb.TaskState_TASK_STATE_DEAD_LETTERED
	case fsmpb.TaskState_TASK_STATE_CANCELLED:
		return griddpb.TaskState_TASK_STATE_CANCELLED
	}
	return griddpb.TaskState_TASK_STATE_NOT_FOUND
}
