package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/gridd/gridd/rpc/griddpb"
)

// The server's bounds per call; longer lists are sent in several calls.
const (
	showChunk   = 1_000
	cancelChunk = 10_000
)

func newTaskCmd(g *globals) *cobra.Command {
	return group("task", "Show the state of tasks and cancel them", taskShowCmd(g), taskCancelCmd(g))
}

const taskShowLong = `Show the state of tasks of a session, by id:

  pending        waiting for a worker
  running        held by a worker now (the WORKER column names it)
  failed         failed at least once; waits for its next attempt, not before
                 the time in NOT BEFORE (the retry backoff)
  completed      has a result (delivered to the client or not)
  dead-lettered  failed every attempt (see gridctl dlq list)
  cancelled      cancelled before it had an outcome
  not found      the session does not know this id

The leader answers, so "running" is accurate at the moment of the call.`

func taskShowCmd(g *globals) *cobra.Command {
	var session string
	cmd := &cobra.Command{
		Use:   "show --session SESSION ID...",
		Short: "Show tasks' states: pending, running, failed, completed, dead-lettered, cancelled",
		Long:  taskShowLong,
		Example: `  gridctl task show --session 01J9ZQ3V6X6M6P3N4V6ZB0D2QK 17 42
  gridctl task show --session 01J9ZQ3V6X6M6P3N4V6ZB0D2QK 17 -o json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if session == "" {
				return errors.New("which session? give --session SESSION (see gridctl session list)")
			}
			all := &griddpb.GetTasksResponse{}
			for start := 0; start < len(args); start += showChunk {
				req := &griddpb.GetTasksRequest{SessionId: session, Ids: args[start:min(start+showChunk, len(args))]}
				var resp *griddpb.GetTasksResponse
				err := call(cmd.Context(), g, func(ctx context.Context, cc *grpc.ClientConn) error {
					var err error
					resp, err = griddpb.NewQueueClient(cc).GetTasks(ctx, req)
					return err
				})
				if err != nil {
					return err
				}
				all.Tasks = append(all.Tasks, resp.GetTasks()...)
			}
			return emit(cmd.OutOrStdout(), g, all, func(w io.Writer) error { return tasksTable(w, all.GetTasks()) })
		},
	}
	cmd.Flags().StringVar(&session, "session", "", "the session the tasks belong to (required)")
	return cmd
}

func tasksTable(w io.Writer, tasks []*griddpb.TaskInfo) error {
	rows := [][]string{{"ID", "STATE", "ATTEMPTS", "WORKER", "NOT BEFORE", "LAST ERROR"}}
	for _, t := range tasks {
		last := "-"
		if errs := t.GetErrors(); len(errs) > 0 {
			last = oneLine(errs[len(errs)-1], 60)
		}
		rows = append(rows, []string{t.GetId(), taskStateWords(t.GetState()), i32(t.GetAttempts()),
			orNone(t.GetWorkerId()), unixMs(t.GetNotBeforeUnixMs()), last})
	}
	return tabular(w, rows)
}

func taskStateWords(s griddpb.TaskState) string {
	switch s {
	case griddpb.TaskState_TASK_STATE_PENDING:
		return "pending"
	case griddpb.TaskState_TASK_STATE_RUNNING:
		return "running"
	case griddpb.TaskState_TASK_STATE_FAILED:
		return "failed"
	case griddpb.TaskState_TASK_STATE_COMPLETED:
		return "completed"
	case griddpb.TaskState_TASK_STATE_DEAD_LETTERED:
		return "dead-lettered"
	case griddpb.TaskState_TASK_STATE_CANCELLED:
		return "cancelled"
	case griddpb.TaskState_TASK_STATE_NOT_FOUND:
		return "not found"
	}
	return "unknown"
}

const taskCancelLong = `Cancel tasks of a session: the ids given, or with --all every task of the
session that has no outcome yet. A cancelled task is never dispatched again;
a worker running it is told to stop, and its result is ignored. Tasks that
already have a result or are dead-lettered are left alone and not counted.
The id stays taken: submitting it again is a duplicate.

To cancel everything and drop the session's data too, close the session
(gridctl session close).`

func taskCancelCmd(g *globals) *cobra.Command {
	var (
		session string
		all     bool
	)
	cmd := &cobra.Command{
		Use:   "cancel --session SESSION ID...|--all",
		Short: "Cancel tasks by id, or every task of a session without an outcome",
		Long:  taskCancelLong,
		Example: `  gridctl task cancel --session 01J9ZQ3V6X6M6P3N4V6ZB0D2QK 17 42
  gridctl task cancel --session 01J9ZQ3V6X6M6P3N4V6ZB0D2QK --all`,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case session == "":
				return errors.New("which session? give --session SESSION (see gridctl session list)")
			case all && len(args) > 0:
				return errors.New("give task ids or --all, not both")
			case !all && len(args) == 0:
				return errors.New("which tasks? give their ids, or --all for every task of the session without an outcome")
			}
			// One request per call, each with its own idempotency key made
			// once, so call's retries on other addresses reuse it.
			var reqs []*griddpb.CancelTasksRequest
			if all {
				reqs = append(reqs, &griddpb.CancelTasksRequest{RequestId: requestID(), SessionId: session, All: true})
			}
			for start := 0; start < len(args); start += cancelChunk {
				reqs = append(reqs, &griddpb.CancelTasksRequest{RequestId: requestID(), SessionId: session,
					Ids: args[start:min(start+cancelChunk, len(args))]})
			}
			total := &griddpb.CancelTasksResponse{}
			for _, req := range reqs {
				var resp *griddpb.CancelTasksResponse
				err := call(cmd.Context(), g, func(ctx context.Context, cc *grpc.ClientConn) error {
					var err error
					resp, err = griddpb.NewQueueClient(cc).CancelTasks(ctx, req)
					return err
				})
				if err != nil {
					return err
				}
				total.Cancelled += resp.GetCancelled()
			}
			return emit(cmd.OutOrStdout(), g, total, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%d tasks of session %s cancelled\n", total.GetCancelled(), session)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&session, "session", "", "the session the tasks belong to (required)")
	cmd.Flags().BoolVar(&all, "all", false, "cancel every task of the session that has no outcome yet")
	return cmd
}
