package main

import (
	"context"
	"io"
	"strconv"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/gridd/gridd/rpc/griddpb"
)

func newWorkersCmd(g *globals) *cobra.Command {
	return group("workers", "Show the workers connected to the cluster", workersListCmd(g))
}

func workersListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the workers connected to the leader, the session each is bound to and its running tasks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var resp *griddpb.ListWorkersResponse
			err := call(cmd.Context(), g, func(ctx context.Context, cc *grpc.ClientConn) error {
				var err error
				resp, err = griddpb.NewQueueClient(cc).ListWorkers(ctx, &griddpb.ListWorkersRequest{})
				return err
			})
			if err != nil {
				return err
			}
			return emit(cmd.OutOrStdout(), g, resp, func(w io.Writer) error { return workersTable(w, resp.GetWorkers()) })
		},
	}
}

func workersTable(w io.Writer, workers []*griddpb.WorkerInfo) error {
	rows := [][]string{{"ID", "NODE", "POD", "SESSION", "RUNNING", "CONNECTED", "REGISTERED"}}
	for _, wi := range workers {
		rows = append(rows, []string{wi.GetId(), orNone(wi.GetNode()), orNone(wi.GetPod()),
			orNone(wi.GetSessionId()), strconv.FormatUint(uint64(wi.GetRunning()), 10),
			unixMs(wi.GetConnectedUnixMs()), strconv.FormatBool(wi.GetRegistered())})
	}
	return tabular(w, rows)
}
