package client

import (
	"context"
	"sync"
	"time"

	"github.com/gridd/gridd/rpc/griddpb"
)

// Bounds of one CancelTasks or GetTasks call on the server; larger lists
// are split here.
const (
	maxCancelIDs = 10_000
	maxGetIDs    = 1_000
)

// TaskState is where a task is in its life: pending, running, failed
// (waiting for a retry), completed, dead-lettered, cancelled, or not found.
type TaskState = griddpb.TaskState

// The states Tasks reports.
const (
	TaskPending      = griddpb.TaskState_TASK_STATE_PENDING
	TaskRunning      = griddpb.TaskState_TASK_STATE_RUNNING
	TaskFailed       = griddpb.TaskState_TASK_STATE_FAILED
	TaskCompleted    = griddpb.TaskState_TASK_STATE_COMPLETED
	TaskDeadLettered = griddpb.TaskState_TASK_STATE_DEAD_LETTERED
	TaskCancelled    = griddpb.TaskState_TASK_STATE_CANCELLED
	TaskNotFound     = griddpb.TaskState_TASK_STATE_NOT_FOUND
)

// TaskInfo is one task's state as the leader sees it.
type TaskInfo struct {
	ID       string
	State    TaskState
	Attempts int32    // failed attempts so far
	Errors   []string // each failed attempt's error, oldest first
	// NotBefore: a failed task is not retried before this time (its retry
	// backoff); zero when it does not wait.
	NotBefore time.Time
	WorkerID  string // the worker running it (TaskRunning only)
}

// cancelled remembers the ids this Session cancelled: they will have no
// outcome, so they must not count in flight again if they are submitted
// again (the server answers a duplicate).
type cancelled struct {
	mu  sync.Mutex
	ids map[string]struct{}
}

func (c *cancelled) add(ids []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil {
		c.ids = make(map[string]struct{}, len(ids))
	}
	for _, id := range ids {
		c.ids[id] = struct{}{}
	}
}

func (c *cancelled) has(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.ids[id]
	return ok
}

// Cancel cancels tasks of the session by id and returns how many were
// cancelled: ids that were unknown or already had an outcome are not
// counted. A cancelled task is never dispatched again; a worker running it
// is told to stop and its result is ignored. Cancelled tasks stop counting
// in flight (WithMaxInflightTasks), since neither a result nor a dead
// letter will come for them. Calls are retried across failovers with the
// same request id, which the cluster answers with the first count.
// More than 10,000 ids are sent in several calls.
func (s *Session) Cancel(ctx context.Context, ids ...string) (int, error) {
	total := 0
	for start := 0; start < len(ids); start += maxCancelIDs {
		chunk := ids[start:min(start+maxCancelIDs, len(ids))]
		n, err := s.cancelTasks(ctx, &griddpb.CancelTasksRequest{SessionId: s.id, Ids: chunk})
		total += n
		if err != nil {
			return total, err
		}
		s.forgetCancelled(chunk)
	}
	return total, nil
}

// CancelAll cancels every task of the session that has no outcome yet, and
// returns how many. Tasks submitted by this Session stop counting in
// flight, except those whose result or dead letter already arrived. Tasks
// still being submitted (a Submit or Add not yet acknowledged) may be
// committed after the cancel and then run as usual.
func (s *Session) CancelAll(ctx context.Context) (int, error) {
	n, err := s.cancelTasks(ctx, &griddpb.CancelTasksRequest{SessionId: s.id, All: true})
	if err != nil {
		return n, err
	}
	s.forgetCancelled(s.flow.snapshot())
	return n, nil
}

func (s *Session) cancelTasks(ctx context.Context, req *griddpb.CancelTasksRequest) (int, error) {
	req.RequestId = newRequestID()
	var resp *griddpb.CancelTasksResponse
	err := s.c.queue(ctx, "cancel tasks of session "+s.id, func(ctx context.Context, q griddpb.QueueClient) error {
		var err error
		resp, err = q.CancelTasks(ctx, req)
		return err
	})
	return int(resp.GetCancelled()), err
}

// forgetCancelled frees the in-flight slots of ids whose outcome has not
// arrived: if a listed task already had an outcome on the server, its
// result still comes and is delivered, only without holding a slot.
func (s *Session) forgetCancelled(ids []string) {
	var free []string
	for _, id := range ids {
		if !s.results.seen(id) && !s.dead.seen(id) {
			free = append(free, id)
		}
	}
	s.cancelled.add(free)
	s.flow.release(free...)
}

// Tasks returns the state of each id, in order. A task the session does
// not know is TaskNotFound. The leader answers, after confirming its
// leadership, so a task reported running is held by a worker now; more
// than 1,000 ids are asked in several calls.
func (s *Session) Tasks(ctx context.Context, ids ...string) ([]TaskInfo, error) {
	out := make([]TaskInfo, 0, len(ids))
	for start := 0; start < len(ids); start += maxGetIDs {
		req := &griddpb.GetTasksRequest{SessionId: s.id, Ids: ids[start:min(start+maxGetIDs, len(ids))]}
		var resp *griddpb.GetTasksResponse
		err := s.c.queue(ctx, "get tasks of session "+s.id, func(ctx context.Context, q griddpb.QueueClient) error {
			var err error
			resp, err = q.GetTasks(ctx, req)
			return err
		})
		if err != nil {
			return out, err
		}
		for _, t := range resp.GetTasks() {
			ti := TaskInfo{ID: t.GetId(), State: t.GetState(), Attempts: t.GetAttempts(), Errors: t.GetErrors(),
				WorkerID: t.GetWorkerId()}
			if ms := t.GetNotBeforeUnixMs(); ms > 0 {
				ti.NotBefore = time.UnixMilli(ms)
			}
			out = append(out, ti)
		}
	}
	return out, nil
}
