package main

import (
	"context"
	"fmt"
	"io"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
)

func newClusterCmd(g *globals) *cobra.Command {
	return group("cluster", "Show and change the cluster's members and leader",
		clusterStatusCmd(g), clusterMembersCmd(g), clusterJoinCmd(g),
		clusterRemoveCmd(g), clusterTransferCmd(g), clusterSnapshotCmd(g))
}

// clusterStatus asks the first node that answers for its view.
func clusterStatus(cmd *cobra.Command, g *globals) (*griddpb.ClusterStatus, error) {
	var st *griddpb.ClusterStatus
	err := call(cmd.Context(), g, func(ctx context.Context, cc *grpc.ClientConn) error {
		var err error
		st, err = griddpb.NewClusterClient(cc).Status(ctx, &griddpb.ClusterStatusRequest{})
		return err
	})
	return st, err
}

func clusterStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the leader, the answering node's Raft state and indexes, and the members",
		Long: `Show the cluster as the first node that answers sees it: the leader, that
node's state and term, its last, commit and applied log indexes, and the
members. Ask each node (one --addr at a time) to compare their views.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := clusterStatus(cmd, g)
			if err != nil {
				return err
			}
			return emit(cmd.OutOrStdout(), g, st, func(w io.Writer) error { return statusTable(w, st) })
		},
	}
}

func clusterMembersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the members: id, addresses, suffrage and leader",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := clusterStatus(cmd, g)
			if err != nil {
				return err
			}
			return emitMembers(cmd.OutOrStdout(), g, st.GetMembers())
		},
	}
}

func clusterJoinCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "join ID RAFT_ADDR GRPC_ADDR",
		Short: "Add a node to the cluster (idempotent)",
		Long: `Add the node ID, reachable at RAFT_ADDR by its peers and at GRPC_ADDR by
clients, as a voter. A node started with --join does this by itself; use this
command for a node started without one. Joining a node that is already a
member with the same addresses changes nothing.`,
		Example: "  gridctl cluster join n4 127.0.0.1:27340 127.0.0.1:21340",
		Args:    cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &griddpb.JoinRequest{Id: args[0], RaftAddr: args[1], GrpcAddr: args[2]}
			var resp *griddpb.JoinResponse
			err := call(cmd.Context(), g, func(ctx context.Context, cc *grpc.ClientConn) error {
				var err error
				resp, err = griddpb.NewClusterClient(cc).Join(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return emit(cmd.OutOrStdout(), g, resp, func(w io.Writer) error {
				fmt.Fprintf(w, "%s is a member\n\n", req.Id)
				return membersTable(w, resp.GetStatus().GetMembers())
			})
		},
	}
}

func clusterRemoveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a node from the cluster",
		Long: `Remove the node ID from the Raft configuration; the node stops taking part
in the cluster. Its data dir is left alone: gridctl cluster join adds it back.
Removing the leader makes the others elect a new one.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &griddpb.RemoveRequest{Id: args[0]}
			var resp *griddpb.RemoveResponse
			err := call(cmd.Context(), g, func(ctx context.Context, cc *grpc.ClientConn) error {
				var err error
				resp, err = griddpb.NewClusterClient(cc).Remove(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return emit(cmd.OutOrStdout(), g, resp, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%s removed\n", req.Id)
				return err
			})
		},
	}
}

func clusterTransferCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "transfer-leader [ID]",
		Short: "Hand leadership to ID, or to the most up-to-date follower",
		Long: `Ask the leader to hand leadership over, to ID or, without one, to the
follower Raft finds most up to date: before maintenance of the leader's
machine, for example. Tasks keep flowing; running ones may run again.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &griddpb.TransferLeadershipRequest{}
			if len(args) == 1 {
				req.Id = args[0]
			}
			var resp *griddpb.TransferLeadershipResponse
			err := call(cmd.Context(), g, func(ctx context.Context, cc *grpc.ClientConn) error {
				var err error
				resp, err = griddpb.NewClusterClient(cc).TransferLeadership(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return emit(cmd.OutOrStdout(), g, resp, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "leadership handed to %s\n", orNone(resp.GetLeaderId()))
				return err
			})
		},
	}
}
