package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gridd/gridd/jepsen/checker"
	"github.com/gridd/gridd/jepsen/history"
	"github.com/gridd/gridd/jepsen/nemesis"
	"github.com/gridd/gridd/rpc/griddpb"
)

// statusOf asks each node for its own view (Status is answered locally,
// never forwarded); a node that does not answer gets a nil entry.
func statusOf(ctx context.Context, addrs []string) []*griddpb.ClusterStatus {
	out := make([]*griddpb.ClusterStatus, len(addrs))
	for i, a := range addrs {
		cc, err := grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := griddpb.NewClusterClient(cc).Status(sctx, &griddpb.ClusterStatusRequest{})
		cancel()
		_ = cc.Close()
		if err == nil {
			out[i] = st
		}
	}
	return out
}

// leaderOf returns the id of the node that says it is the leader.
func leaderOf(ctx context.Context, addrs []string) (string, error) {
	for _, st := range statusOf(ctx, addrs) {
		if st != nil && st.GetState() == "leader" {
			return st.GetNodeId(), nil
		}
	}
	return "", fmt.Errorf("no node of %v says it is the leader", addrs)
}

// waitHealthy polls until one node leads and every node answers with the
// same leader and all members, or timeout.
func waitHealthy(ctx context.Context, addrs []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		r := agreement(statusOf(ctx, addrs), len(addrs), false)
		if r.Valid {
			return nil
		}
		last = r.Detail
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster %v not healthy after %s: %s", addrs, timeout, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the cluster: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// clusterResult is the end-of-run check of the cluster itself.
type clusterResult struct {
	Valid  bool   `json:"valid"`
	Detail string `json:"detail"`
	Leader string `json:"leader,omitempty"`
	// AppliedIndex of every node, when they agree.
	AppliedIndex uint64 `json:"applied_index,omitempty"`
}

// agreement judges statuses: every node answers, exactly one leads, all
// name it and list n members, and (when sameIndex) all have applied the
// same index.
func agreement(sts []*griddpb.ClusterStatus, n int, sameIndex bool) clusterResult {
	leaders := 0
	var leader string
	for i, st := range sts {
		if st == nil {
			return clusterResult{Detail: fmt.Sprintf("node %d does not answer", i+1)}
		}
		if st.GetState() == "leader" {
			leaders++
			leader = st.GetNodeId()
		}
	}
	if leaders != 1 {
		return clusterResult{Detail: fmt.Sprintf("%d leaders", leaders)}
	}
	for _, st := range sts {
		if st.GetLeaderId() != leader || len(st.GetMembers()) != n {
			return clusterResult{Detail: fmt.Sprintf("node %s sees leader %q and %d members, leader is %s",
				st.GetNodeId(), st.GetLeaderId(), len(st.GetMembers()), leader)}
		}
		if sameIndex && st.GetAppliedIndex() != sts[0].GetAppliedIndex() {
			return clusterResult{Detail: fmt.Sprintf("applied indexes differ: %s at %d, %s at %d",
				sts[0].GetNodeId(), sts[0].GetAppliedIndex(), st.GetNodeId(), st.GetAppliedIndex())}
		}
	}
	return clusterResult{Valid: true, Leader: leader, AppliedIndex: sts[0].GetAppliedIndex(),
		Detail: fmt.Sprintf("one leader (%s), %d nodes agree, applied index %d", leader, n, sts[0].GetAppliedIndex())}
}

// checkCluster polls, after the load has stopped, until the nodes agree on
// the leader and the applied index, or timeout.
func checkCluster(ctx context.Context, addrs []string, timeout time.Duration) clusterResult {
	deadline := time.Now().Add(timeout)
	for {
		r := agreement(statusOf(ctx, addrs), len(addrs), true)
		if r.Valid || time.Now().After(deadline) {
			return r
		}
		select {
		case <-ctx.Done():
			r.Detail += " (interrupted)"
			return r
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// drain waits until every acknowledged task in the history has an outcome
// (the queue checker finds none lost), then a little longer for outcomes
// of submits whose outcome was unknown, at most timeout in all.
func drain(ctx context.Context, rec *history.Recorder, timeout time.Duration, log *slog.Logger) {
	deadline := time.Now().Add(timeout)
	for {
		lost := checker.Queue(rec.Ops()).Lost
		if lost == 0 {
			log.Info("drained: every acknowledged task has an outcome")
			break
		}
		if time.Now().After(deadline) {
			log.Warn("drain timed out", "without outcome", lost)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	select {
	case <-ctx.Done():
	case <-time.After(3 * time.Second):
	}
}

// membership is the nemesis's view of the Cluster service: a node id is
// resolved to its host address by asking every address for its Status.
type membership struct {
	addrs []string
}

func (m membership) client(ctx context.Context, via string) (*grpc.ClientConn, error) {
	for i, st := range statusOf(ctx, m.addrs) {
		if st != nil && st.GetNodeId() == via {
			return grpc.NewClient(m.addrs[i], grpc.WithTransportCredentials(insecure.NewCredentials()))
		}
	}
	return nil, fmt.Errorf("no address of %v answers as node %s", m.addrs, via)
}

func (m membership) call(ctx context.Context, via string, f func(context.Context, griddpb.ClusterClient) error) error {
	cc, err := m.client(ctx, via)
	if err != nil {
		return err
	}
	defer func() { _ = cc.Close() }()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return f(cctx, griddpb.NewClusterClient(cc))
}

func (m membership) Members(ctx context.Context, via string) ([]nemesis.Member, error) {
	var out []nemesis.Member
	err := m.call(ctx, via, func(ctx context.Context, c griddpb.ClusterClient) error {
		st, err := c.Status(ctx, &griddpb.ClusterStatusRequest{})
		if err != nil {
			return err
		}
		for _, mb := range st.GetMembers() {
			out = append(out, nemesis.Member{ID: mb.GetId(), RaftAddr: mb.GetRaftAddr(),
				GRPCAddr: mb.GetGrpcAddr(), Leader: mb.GetLeader()})
		}
		return nil
	})
	return out, err
}

func (m membership) Remove(ctx context.Context, via, id string) error {
	return m.call(ctx, via, func(ctx context.Context, c griddpb.ClusterClient) error {
		_, err := c.Remove(ctx, &griddpb.RemoveRequest{Id: id})
		return err
	})
}

func (m membership) Join(ctx context.Context, via string, mb nemesis.Member) error {
	return m.call(ctx, via, func(ctx context.Context, c griddpb.ClusterClient) error {
		_, err := c.Join(ctx, &griddpb.JoinRequest{Id: mb.ID, RaftAddr: mb.RaftAddr, GrpcAddr: mb.GRPCAddr})
		return err
	})
}
