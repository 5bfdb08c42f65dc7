package server_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
)

// TestWipedFollowerIsReAdded: a follower whose data dir is wiped starts
// awaiting admission (it may not vote: it forgot what it acknowledged),
// the leader removes it and adds it back, and once it holds that entry it
// votes again and agrees with the others.
func TestWipedFollowerIsReAdded(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leader := c.WaitLeader()
	q := griddpb.NewQueueClient(dialRaw(t, c.Nodes[leader].Cfg.GRPCAddr))
	for i := range 20 {
		if _, err := q.CreateSession(ctx, &griddpb.CreateSessionRequest{RequestId: "before-" + string(rune('a'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	f := (leader + 1) % 3
	for _, n := range []int{0, 1, 2} {
		if n == f {
			continue
		}
		if c.Nodes[n].Srv.Node().AwaitingAdmission() {
			t.Fatalf("node %d awaits admission although it was admitted long ago", n+1)
		}
	}
	before := c.Nodes[leader].Srv.Node().Status().LastLogIndex
	c.Kill(f)
	dir := c.Nodes[f].Cfg.DataDir
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	c.Restart(f)
	node := c.Nodes[f].Srv.Node()
	c.WaitFor("the wiped follower to be re-added and admitted", 30*time.Second, func() bool {
		return !node.AwaitingAdmission()
	})
	if _, err := os.Stat(filepath.Join(dir, "awaiting-admission")); !os.IsNotExist(err) {
		t.Fatalf("admission marker left behind: %v", err)
	}
	// Removing and adding it back took configuration entries after the
	// ones written before the wipe.
	if st := c.Nodes[c.WaitLeader()].Srv.Node().Status(); st.LastLogIndex <= before || len(st.Members) != 3 {
		t.Fatalf("after the rejoin: last index %d (before %d), %d members", st.LastLogIndex, before, len(st.Members))
	}
	c.WaitConverged()
	// The re-added node's vote counts again: with the old leader gone, the
	// other two elect a leader.
	old := c.WaitLeader()
	c.Kill(old)
	c.WaitFor("a leader among the two survivors", 20*time.Second, func() bool {
		l := c.Leader()
		return l >= 0 && l != old
	})
}
