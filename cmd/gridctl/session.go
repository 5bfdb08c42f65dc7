package main

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/oklog/ulid/v2"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

func newSessionCmd(g *globals) *cobra.Command {
	return group("session", "List, inspect, update and close sessions",
		sessionListCmd(g), sessionShowCmd(g), sessionUpdateCmd(g), sessionCloseCmd(g), sessionWatchCmd(g))
}

// requestID is the idempotency key of one session write. It is made once
// per command, so the retries call() makes on other addresses reuse it and
// a write that landed before a connection dropped is not applied twice.
func requestID() string { return ulid.Make().String() }

func sessionListCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List open sessions (--all: closed ones too)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var resp *griddpb.ListSessionsResponse
			err := call(cmd.Context(), g, func(ctx context.Context, cc *grpc.ClientConn) error {
				var err error
				resp, err = griddpb.NewQueueClient(cc).ListSessions(ctx, &griddpb.ListSessionsRequest{IncludeClosed: all})
				return err
			})
			if err != nil {
				return err
			}
			return emit(cmd.OutOrStdout(), g, resp, func(w io.Writer) error {
				return sessionsTable(w, resp.GetSessions())
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "include closed sessions")
	return cmd
}

func sessionShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a session's attributes and task counts per state",
		Long: `Show a session's attributes and how many of its tasks are in each state:
pending (no outcome yet; this includes the running and retrying ones),
running (held by a worker, as the leader sees it), retrying (failed at least
once and waiting for another attempt), completed, dead-lettered and
cancelled; and how many attempts were retried or timed out. With -o json the
counts are the "counts" object of the session.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var s *griddpb.Session
			err := call(cmd.Context(), g, func(ctx context.Context, cc *grpc.ClientConn) error {
				var err error
				s, err = griddpb.NewQueueClient(cc).GetSession(ctx, &griddpb.GetSessionRequest{SessionId: args[0]})
				return err
			})
			return printSession(cmd, g, s, err)
		},
	}
}

func printSession(cmd *cobra.Command, g *globals, s *griddpb.Session, err error) error {
	if err != nil {
		return err
	}
	return emit(cmd.OutOrStdout(), g, s, func(w io.Writer) error { return sessionDetail(w, s) })
}

// updateFlags are the flags of session update; each one is sent only when
// given, so an update never resets what it does not mention.
type updateFlags struct {
	priority, minWorkers, maxWorkers, maxAttempts, maxInflight int32
	idleTimeout, taskTimeout, retryBackoff, retryBackoffMax    time.Duration
	preemptible, cleanup                                       bool
	tags                                                       []string
}

func sessionUpdateCmd(g *globals) *cobra.Command {
	var f updateFlags
	cmd := &cobra.Command{
		Use:   "update ID [flags]",
		Short: "Change a session's attributes; only the flags given are changed",
		Example: `  gridctl session update 01J9ZQ3V6X6M6P3N4V6ZB0D2QK --priority 8 --max-workers 16
  gridctl session update 01J9ZQ3V6X6M6P3N4V6ZB0D2QK --tags risk,eod --idle-timeout 5m`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := f.update(cmd.Flags())
			if err != nil {
				return err
			}
			req := &griddpb.UpdateSessionRequest{RequestId: requestID(), SessionId: args[0], Update: u}
			var s *griddpb.Session
			err = call(cmd.Context(), g, func(ctx context.Context, cc *grpc.ClientConn) error {
				var err error
				s, err = griddpb.NewQueueClient(cc).UpdateSession(ctx, req)
				return err
			})
			return printSession(cmd, g, s, err)
		},
	}
	f.register(cmd.Flags())
	return cmd
}

func (f *updateFlags) register(fs *pflag.FlagSet) {
	fs.Int32Var(&f.priority, "priority", 0, "priority, 0 (lowest) to 10 (highest)")
	fs.Int32Var(&f.minWorkers, "min-workers", 0, "fewest workers the session should have")
	fs.Int32Var(&f.maxWorkers, "max-workers", 0, "most workers bound at once; 0 means unlimited")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 0, "inactivity after which the session releases its workers")
	fs.DurationVar(&f.taskTimeout, "task-timeout", 0, "how long an attempt may run before it counts as failed; 0 means no limit")
	fs.Int32Var(&f.maxAttempts, "max-attempts", 0, "attempts before a failing task is dead-lettered")
	fs.DurationVar(&f.retryBackoff, "retry-backoff", 0, "wait before the first retry of a failed attempt; it doubles with every failure (server default 100ms)")
	fs.DurationVar(&f.retryBackoffMax, "retry-backoff-max", 0, "longest wait between retries (server default 10s)")
	fs.Int32Var(&f.maxInflight, "max-inflight-batches-per-worker", 0, "batches a worker may hold at once")
	fs.BoolVar(&f.preemptible, "preemptible", false, "whether higher-priority sessions may take this session's workers")
	fs.BoolVar(&f.cleanup, "cleanup-on-client-exit", false, "whether the session closes when its client disconnects")
	fs.StringSliceVar(&f.tags, "tags", nil, `replace the tags (comma-separated; "" clears them)`)
}

// update builds the SessionUpdate of the flags the user gave.
func (f *updateFlags) update(fs *pflag.FlagSet) (*griddpb.SessionUpdate, error) {
	u := &griddpb.SessionUpdate{}
	set32 := func(name string, v int32, dst **int32) {
		if fs.Changed(name) {
			*dst = proto.Int32(v)
		}
	}
	set32("priority", f.priority, &u.Priority)
	set32("min-workers", f.minWorkers, &u.MinWorkers)
	set32("max-workers", f.maxWorkers, &u.MaxWorkers)
	set32("max-attempts", f.maxAttempts, &u.MaxAttempts)
	set32("max-inflight-batches-per-worker", f.maxInflight, &u.MaxInflightBatchesPerWorker)
	if fs.Changed("idle-timeout") {
		u.IdleTimeoutMs = proto.Int64(f.idleTimeout.Milliseconds())
	}
	if fs.Changed("task-timeout") {
		u.TaskTimeoutMs = proto.Int64(f.taskTimeout.Milliseconds())
	}
	if fs.Changed("retry-backoff") {
		u.RetryBackoffMs = proto.Int64(f.retryBackoff.Milliseconds())
	}
	if fs.Changed("retry-backoff-max") {
		u.RetryBackoffMaxMs = proto.Int64(f.retryBackoffMax.Milliseconds())
	}
	if fs.Changed("preemptible") {
		u.Preemptible = proto.Bool(f.preemptible)
	}
	if fs.Changed("cleanup-on-client-exit") {
		u.CleanupOnClientExit = proto.Bool(f.cleanup)
	}
	if fs.Changed("tags") {
		u.ReplaceTags, u.Tags = true, f.tags
	}
	if proto.Equal(u, &griddpb.SessionUpdate{}) {
		return nil, errors.New("nothing to update: give at least one of --priority, --min-workers, --max-workers, " +
			"--idle-timeout, --task-timeout, --max-attempts, --retry-backoff, --retry-backoff-max, " +
			"--max-inflight-batches-per-worker, --preemptible, " +
			"--cleanup-on-client-exit, --tags (see gridctl session update --help)")
	}
	return u, nil
}

func sessionCloseCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "close ID",
		Short: "Close a session: cancel its pending tasks, drop its unacknowledged results",
		Long: `Close the session ID. It accepts no more tasks; its pending tasks are
cancelled and its results and dead letters not yet acknowledged are dropped.
Its attributes and counts stay readable (session list --all). Closing a closed
session changes nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &griddpb.CloseSessionRequest{RequestId: requestID(), SessionId: args[0]}
			var s *griddpb.Session
			err := call(cmd.Context(), g, func(ctx context.Context, cc *grpc.ClientConn) error {
				var err error
				s, err = griddpb.NewQueueClient(cc).CloseSession(ctx, req)
				return err
			})
			return printSession(cmd, g, s, err)
		},
	}
}
