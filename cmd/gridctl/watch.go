package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/gridd/gridd/rpc/griddpb"
)

// watchLine is one poll of session watch -o json.
type watchLine struct {
	Session      string  `json:"session"`
	State        string  `json:"state"`
	Submitted    uint64  `json:"submitted"`
	Done         uint64  `json:"done"`
	Completed    uint64  `json:"completed"`
	DeadLettered uint64  `json:"dead_lettered"`
	Pending      uint64  `json:"pending"`
	Running      uint64  `json:"running"`
	Retried      uint64  `json:"retried"`
	TasksPerSec  float64 `json:"tasks_per_sec"`
	// ETASeconds is -1 while the rate is unknown (nothing finished lately).
	ETASeconds float64 `json:"eta_seconds"`
}

func sessionWatchCmd(g *globals) *cobra.Command {
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "watch ID",
		Short: "Follow a session's progress (done / total, rate, ETA, failures) until no task is pending",
		Long: `Poll the session every --interval and show how many of its tasks have an
outcome, the rate over the last seconds, the time left at that rate and the
dead-lettered tasks. On a terminal the line is redrawn in place; otherwise, and
with --output json (one object per poll), a line is printed per poll. It ends
when no task is pending or the session is closed, or on Ctrl-C.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval <= 0 {
				return fmt.Errorf("--interval %s: want a positive duration", interval)
			}
			return watchSession(cmd.Context(), g, args[0], interval, cmd.OutOrStdout())
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", 500*time.Millisecond, "time between polls")
	return cmd
}

func watchSession(ctx context.Context, g *globals, id string, interval time.Duration, out io.Writer) error {
	bar := newProgressBar(out, g.output != "json" && isTerminal(out))
	defer bar.finish()
	meter := rateMeter{window: 5 * time.Second}
	start := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		var s *griddpb.Session
		err := call(ctx, g, func(ctx context.Context, cc *grpc.ClientConn) error {
			var err error
			s, err = griddpb.NewQueueClient(cc).GetSession(ctx, &griddpb.GetSessionRequest{SessionId: id})
			return err
		})
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, errUnreachable) {
				return nil // Ctrl-C during a poll
			}
			return err
		}
		c := s.GetCounts()
		done := c.GetCompleted() + c.GetDeadLettered()
		now := time.Now()
		meter.add(now, done)
		rate := meter.perSecond()
		finished := c.GetPending() == 0 || s.GetState() == griddpb.SessionState_SESSION_STATE_CLOSED
		switch {
		case g.output == "json":
			eta := -1.0
			if finished {
				eta = 0
			} else if rate > 0 {
				eta = math.Round(float64(c.GetPending())/rate*10) / 10
			}
			b, err := json.Marshal(watchLine{Session: id, State: stateWords(s.GetState()), Submitted: c.GetSubmitted(),
				Done: done, Completed: c.GetCompleted(), DeadLettered: c.GetDeadLettered(), Pending: c.GetPending(),
				Running: c.GetRunning(), Retried: c.GetRetried(), TasksPerSec: math.Round(rate*10) / 10, ETASeconds: eta})
			if err != nil {
				return fmt.Errorf("encode progress: %w", err)
			}
			if _, err := fmt.Fprintf(out, "%s\n", b); err != nil {
				return err
			}
		case bar.enabled:
			bar.rate = meter
			bar.update(done, c.GetSubmitted(), c.GetDeadLettered(), true)
		default:
			if _, err := fmt.Fprintln(out, progressLine(done, c.GetSubmitted(), c.GetDeadLettered(), rate, now.Sub(start))); err != nil {
				return err
			}
		}
		if finished {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
