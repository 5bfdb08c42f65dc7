package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/gridd/gridd/rpc/griddpb"
)

func newDLQCmd(g *globals) *cobra.Command {
	return group("dlq", "List, retry and purge a session's dead letters",
		dlqListCmd(g), dlqRetryCmd(g), dlqPurgeCmd(g))
}

func dlqListCmd(g *globals) *cobra.Command {
	var limit int32
	cmd := &cobra.Command{
		Use:   "list SESSION",
		Short: "List a session's dead letters, oldest first, without consuming them",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return fmt.Errorf("--limit %d: want 0 (the server's default) or more", limit)
			}
			var resp *griddpb.ListDeadLettersResponse
			err := call(cmd.Context(), g, func(ctx context.Context, cc *grpc.ClientConn) error {
				var err error
				resp, err = griddpb.NewQueueClient(cc).ListDeadLetters(ctx,
					&griddpb.ListDeadLettersRequest{SessionId: args[0], Limit: limit})
				return err
			})
			if err != nil {
				return err
			}
			return emit(cmd.OutOrStdout(), g, resp, func(w io.Writer) error { return deadLettersTable(w, resp) })
		},
	}
	cmd.Flags().Int32Var(&limit, "limit", 0, "list at most this many (0: the server's default, 1000)")
	return cmd
}

func deadLettersTable(w io.Writer, resp *griddpb.ListDeadLettersResponse) error {
	rows := [][]string{{"ID", "ATTEMPTS", "LAST ERROR", "PAYLOAD"}}
	for _, m := range resp.GetDeadLetters() {
		last := "-"
		if errs := m.GetErrors(); len(errs) > 0 {
			last = errs[len(errs)-1]
		} else if m.GetError() != "" {
			last = m.GetError()
		}
		rows = append(rows, []string{m.GetId(), i32(m.GetAttempt()), oneLine(last, 60), payloadPreview(m.GetPayload())})
	}
	if err := tabular(w, rows); err != nil {
		return err
	}
	if shown := uint64(len(resp.GetDeadLetters())); resp.GetTotal() > shown {
		_, err := fmt.Fprintf(w, "(%d of %d shown; raise --limit for more)\n", shown, resp.GetTotal())
		return err
	}
	return nil
}

// oneLine keeps a table row on one line: tabs and newlines would break
// the columns, and long texts are cut.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		s = string(r[:max-1]) + "…"
	}
	return s
}

func payloadPreview(p []byte) string {
	if len(p) == 0 {
		return "-"
	}
	if !utf8.Valid(p) {
		return strconv.Itoa(len(p)) + " bytes (binary)"
	}
	return oneLine(string(p), 40)
}

func dlqRetryCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "retry SESSION [ID...]",
		Short: "Requeue dead letters with a fresh attempt budget (all of the session's when no ID is given)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &griddpb.RetryDeadLettersRequest{RequestId: requestID(), SessionId: args[0], Ids: args[1:]}
			var resp *griddpb.RetryDeadLettersResponse
			err := call(cmd.Context(), g, func(ctx context.Context, cc *grpc.ClientConn) error {
				var err error
				resp, err = griddpb.NewQueueClient(cc).RetryDeadLetters(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return emit(cmd.OutOrStdout(), g, resp, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%d dead letters of session %s requeued\n", resp.GetRetried(), args[0])
				return err
			})
		},
	}
}

func dlqPurgeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "purge SESSION [ID...]",
		Short: "Drop dead letters (all of the session's when no ID is given)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &griddpb.PurgeDeadLettersRequest{RequestId: requestID(), SessionId: args[0], Ids: args[1:]}
			var resp *griddpb.PurgeDeadLettersResponse
			err := call(cmd.Context(), g, func(ctx context.Context, cc *grpc.ClientConn) error {
				var err error
				resp, err = griddpb.NewQueueClient(cc).PurgeDeadLetters(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return emit(cmd.OutOrStdout(), g, resp, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%d dead letters of session %s dropped\n", resp.GetPurged(), args[0])
				return err
			})
		},
	}
}
