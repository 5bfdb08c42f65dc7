package cluster_test

import (
	"errors"
	"testing"

	"github.com/gridd/gridd/cluster"
	"github.com/gridd/gridd/cluster/clustertest"
	"github.com/gridd/gridd/fsm"
)

func memberOf(n *cluster.Node, id string) (fsm.Member, bool) {
	for _, m := range n.FSM().Members() {
		if m.ID == id {
			return m, true
		}
	}
	return fsm.Member{}, false
}

func voters(t *testing.T, n *cluster.Node) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range n.Status().Members {
		if m.Suffrage == "Voter" {
			out[m.ID] = m.RaftAddr
		}
	}
	return out
}

func TestJoinIsIdempotent(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.WaitForLeader()
	fi, f := follower(t, c)
	ctx := testCtx(t)
	before := leader.Status().LastLogIndex

	// The same node again: nothing changes, not even the log.
	if err := leader.Join(ctx, f.ID(), f.RaftAddr(), f.GRPCAddr()); err != nil {
		t.Fatalf("repeated join: %v", err)
	}
	if got := leader.Status().LastLogIndex; got != before {
		t.Fatalf("repeated join appended entries: last index %d -> %d", before, got)
	}
	if err := f.Join(ctx, "x", "127.0.0.1:1", "x:1"); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("join on a follower: %v, want ErrNotLeader", err)
	}

	// A new gRPC address only updates the member table.
	if err := leader.Join(ctx, f.ID(), f.RaftAddr(), "moved.invalid:1"); err != nil {
		t.Fatalf("join with a new gRPC address: %v", err)
	}
	if m, _ := memberOf(leader, f.ID()); m.GRPCAddr != "moved.invalid:1" {
		t.Fatalf("member after re-join: %+v", m)
	}
	if v := voters(t, leader); len(v) != 3 || v[f.ID()] != f.RaftAddr() {
		t.Fatalf("voters after re-join: %v", v)
	}

	// The same id at a new Raft address: the node moved; the old server is
	// replaced and the node catches up at its new address.
	c.Kill(fi)
	c.Reconfigure(fi, func(cfg *cluster.Config) { cfg.RaftAddr = "127.0.0.1:0" })
	f = c.Restart(fi)
	if err := leader.Join(ctx, f.ID(), f.RaftAddr(), f.GRPCAddr()); err != nil {
		t.Fatalf("join at a new address: %v", err)
	}
	if v := voters(t, leader); len(v) != 3 || v[f.ID()] != f.RaftAddr() {
		t.Fatalf("voters after the move: %v, want %s at %s", v, f.ID(), f.RaftAddr())
	}
	mustPropose(t, c, createSessionCmd("s1"))
	enqueue(t, c, "s1", "t1")
	c.EnsureSame()
	requireTasks(t, c, "s1", []string{"t1"})
	if m, _ := memberOf(f, f.ID()); m.RaftAddr != f.RaftAddr() {
		t.Fatalf("member table on the moved node: %+v", m)
	}
}

func TestRemove(t *testing.T) {
	c := clustertest.Start(t, 4, clustertest.Options{})
	leader := c.WaitForLeader()
	ri, removed := follower(t, c)
	ctx := testCtx(t)
	if err := removed.Remove(ctx, leader.ID()); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("remove on a follower: %v, want ErrNotLeader", err)
	}
	if err := leader.Remove(ctx, removed.ID()); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if v := voters(t, leader); len(v) != 3 || v[removed.ID()] != "" {
		t.Fatalf("voters after remove: %v", v)
	}
	if _, ok := memberOf(leader, removed.ID()); ok {
		t.Fatalf("%s still in the member table", removed.ID())
	}
	// The removed node may never hear of its removal (the leader stops
	// replicating to it); pre-vote keeps it from disturbing the others.
	c.Close(ri)
	if err := leader.Remove(ctx, removed.ID()); err != nil {
		t.Fatalf("removing it again: %v", err)
	}
	mustPropose(t, c, createSessionCmd("s1"))
	c.EnsureSame()
}

func TestTransferLeadership(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	old := c.WaitForLeader()
	if !nextChange(t, old.LeadershipChanges()) {
		t.Fatal("leader: LeadershipChanges got false, want true")
	}
	_, target := follower(t, c)
	ctx := testCtx(t)
	if _, err := target.TransferLeadership(ctx, old.ID()); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("transfer on a follower: %v, want ErrNotLeader", err)
	}
	got, err := old.TransferLeadership(ctx, target.ID())
	if err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if got != target.ID() {
		t.Fatalf("new leader %s, want %s", got, target.ID())
	}
	if v := nextChange(t, old.LeadershipChanges()); v {
		t.Fatal("old leader: LeadershipChanges got true, want false")
	}
	if nl := c.WaitForLeader(); nl.ID() != target.ID() {
		t.Fatalf("cluster settled on %s, want %s", nl.ID(), target.ID())
	}
	if v := nextChange(t, target.LeadershipChanges()); !v {
		t.Fatal("new leader: LeadershipChanges got false, want true")
	}
	mustPropose(t, c, createSessionCmd("s1"))

	// No target: raft picks the most up-to-date follower.
	got, err = target.TransferLeadership(ctx, "")
	if err != nil || got == target.ID() || got == "" {
		t.Fatalf("transfer to anyone: %q, %v", got, err)
	}
	if _, err := c.WaitForLeader().TransferLeadership(ctx, "nobody"); err == nil {
		t.Fatal("transfer to an unknown id succeeded")
	}
	c.EnsureSame()
}
