package rpc

import (
	"context"
	"fmt"
	"strings"

	"github.com/gridd/gridd/cluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// clusterServer implements the Cluster service. Status is answered by any
// node from its own view; membership changes run on the leader.
type clusterServer struct {
	griddpb.UnimplementedClusterServer
	s *Server
}

func (c *clusterServer) Status(ctx context.Context, _ *griddpb.ClusterStatusRequest) (*griddpb.ClusterStatus, error) {
	return statusPB(c.s.node.Status(), c.s.node), nil
}

func statusPB(st cluster.Status, n *cluster.Node) *griddpb.ClusterStatus {
	out := &griddpb.ClusterStatus{
		NodeId:            st.ID,
		State:             strings.ToLower(st.State),
		LeaderId:          st.LeaderID,
		LeaderGrpcAddr:    n.LeaderGRPCAddr(),
		Term:              st.Term,
		LastLogIndex:      st.LastLogIndex,
		CommitIndex:       st.CommitIndex,
		AppliedIndex:      st.AppliedIndex,
		LastSnapshotIndex: st.LastSnapshotIndex,
		GrpcAddr:          n.GRPCAddr(),
		RaftAddr:          n.RaftAddr(),
	}
	for _, m := range st.Members {
		out.Members = append(out.Members, &griddpb.Member{
			Id: m.ID, RaftAddr: m.RaftAddr, GrpcAddr: m.GRPCAddr,
			Suffrage: strings.ToLower(m.Suffrage), Leader: m.Leader,
		})
	}
	return out
}

func (c *clusterServer) Join(ctx context.Context, req *griddpb.JoinRequest) (*griddpb.JoinResponse, error) {
	if conn, err := c.s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return nil, err
		}
		return griddpb.NewClusterClient(conn).Join(c.s.fwd.outgoing(ctx), req)
	}
	if req.Id == "" || req.RaftAddr == "" || req.GrpcAddr == "" {
		return nil, status.Error(codes.InvalidArgument, "join needs the node's id, raft_addr and grpc_addr")
	}
	if err := validateID("node", req.Id); err != nil {
		return nil, toStatus(err)
	}
	idx, err := c.s.node.JoinFresh(ctx, req.Id, req.RaftAddr, req.GrpcAddr, req.Fresh)
	if err != nil {
		return nil, toStatus(err)
	}
	return &griddpb.JoinResponse{Status: statusPB(c.s.node.Status(), c.s.node), AdmittedIndex: idx}, nil
}

func (c *clusterServer) Remove(ctx context.Context, req *griddpb.RemoveRequest) (*griddpb.RemoveResponse, error) {
	if conn, err := c.s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return nil, err
		}
		return griddpb.NewClusterClient(conn).Remove(c.s.fwd.outgoing(ctx), req)
	}
	if err := validateID("node", req.Id); err != nil {
		return nil, toStatus(err)
	}
	if req.Id == c.s.node.ID() {
		return c.removeSelf(ctx, req)
	}
	if err := c.s.node.Remove(ctx, req.Id); err != nil {
		return nil, toStatus(err)
	}
	return &griddpb.RemoveResponse{}, nil
}

// removeSelf removes the leader: it first hands leadership to another
// voter and then has the new leader remove this node. A leader that removed
// itself would shut its Raft down mid-term and leave the cluster without a
// leader until an election timeout; the transfer makes it a clean handover.
func (c *clusterServer) removeSelf(ctx context.Context, req *griddpb.RemoveRequest) (*griddpb.RemoveResponse, error) {
	next, err := c.s.node.TransferLeadership(ctx, "")
	if err != nil {
		return nil, toStatus(fmt.Errorf("remove %s (the leader): hand leadership over first: %w", req.Id, err))
	}
	c.s.log.InfoContext(ctx, "leader asked to remove itself: leadership handed over", "next", next)
	// This hop is a new request of our own, not a forwarded one: drop the
	// mark so that leaderConn does not refuse it as a second hop.
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		md = md.Copy()
		md.Delete(mdForwarded)
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	conn, err := c.s.fwd.leaderConn(ctx)
	switch {
	case err != nil:
		return nil, err
	case conn == nil:
		return nil, status.Errorf(codes.Unavailable, "remove %s: leadership came back to this node; retry", req.Id)
	}
	return griddpb.NewClusterClient(conn).Remove(c.s.fwd.outgoing(ctx), req)
}

func (c *clusterServer) TransferLeadership(ctx context.Context, req *griddpb.TransferLeadershipRequest) (*griddpb.TransferLeadershipResponse, error) {
	if conn, err := c.s.fwd.leaderConn(ctx); err != nil || conn != nil {
		if err != nil {
			return nil, err
		}
		return griddpb.NewClusterClient(conn).TransferLeadership(c.s.fwd.outgoing(ctx), req)
	}
	id, err := c.s.node.TransferLeadership(ctx, req.Id)
	if err != nil {
		return nil, toStatus(err)
	}
	return &griddpb.TransferLeadershipResponse{LeaderId: id}, nil
}
