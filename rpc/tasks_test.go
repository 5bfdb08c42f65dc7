package rpc

import (
	"testing"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/fsm/fsmpb"
	"github.com/gridd/gridd/rpc/griddpb"
)

func TestPublicState(t *testing.T) {
	cases := []struct {
		state    fsmpb.TaskState
		attempts int32
		worker   string
		want     griddpb.TaskState
	}{
		{fsmpb.TaskState_TASK_STATE_PENDING, 0, "", griddpb.TaskState_TASK_STATE_PENDING},
		{fsmpb.TaskState_TASK_STATE_PENDING, 0, "w1", griddpb.TaskState_TASK_STATE_RUNNING},
		{fsmpb.TaskState_TASK_STATE_PENDING, 2, "", griddpb.TaskState_TASK_STATE_FAILED},
		{fsmpb.TaskState_TASK_STATE_PENDING, 2, "w1", griddpb.TaskState_TASK_STATE_RUNNING},
		{fsmpb.TaskState_TASK_STATE_COMPLETED, 0, "", griddpb.TaskState_TASK_STATE_COMPLETED},
		{fsmpb.TaskState_TASK_STATE_COMPLETED_ACKED, 1, "", griddpb.TaskState_TASK_STATE_COMPLETED},
		// A holder left over from a race with the outcome does not matter.
		{fsmpb.TaskState_TASK_STATE_COMPLETED, 0, "w1", griddpb.TaskState_TASK_STATE_COMPLETED},
		{fsmpb.TaskState_TASK_STATE_DEAD, 3, "", griddpb.TaskState_TASK_STATE_DEAD_LETTERED},
		{fsmpb.TaskState_TASK_STATE_DEAD_ACKED, 3, "", griddpb.TaskState_TASK_STATE_DEAD_LETTERED},
		{fsmpb.TaskState_TASK_STATE_CANCELLED, 1, "", griddpb.TaskState_TASK_STATE_CANCELLED},
		{fsmpb.TaskState_TASK_STATE_UNSPECIFIED, 0, "", griddpb.TaskState_TASK_STATE_NOT_FOUND},
	}
	for _, tc := range cases {
		got := publicState(fsm.TaskStatus{State: tc.state, Attempts: tc.attempts}, tc.worker)
		if got != tc.want {
			t.Errorf("%v, %d attempts, worker %q: got %v, want %v", tc.state, tc.attempts, tc.worker, got, tc.want)
		}
	}
}
