package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
)

// TestRemoveLeader: asking the cluster to remove its leader (sent to the
// leader itself) hands leadership over first, so the remaining nodes keep
// a leader and the removed node leaves the configuration cleanly.
func TestRemoveLeader(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	old := c.WaitLeader()
	oldID := c.Nodes[old].Cfg.ID
	cc := griddpb.NewClusterClient(dialRaw(t, c.Nodes[old].Cfg.GRPCAddr))
	if _, err := cc.Remove(ctx, &griddpb.RemoveRequest{Id: oldID}); err != nil {
		t.Fatalf("remove the leader %s: %v", oldID, err)
	}
	// A survivor leads, and its configuration no longer lists the old one.
	var survivor int
	c.WaitFor("a new leader without the removed node", 20*time.Second, func() bool {
		survivor = c.Leader()
		if survivor < 0 || survivor == old {
			return false
		}
		for _, m := range c.Nodes[survivor].Srv.Node().Status().Members {
			if m.ID == oldID {
				return false
			}
		}
		return true
	})
	// The old leader was removed by its successor, not by itself, so its
	// Raft still runs (a leader removing itself shuts Raft down), and it can
	// be added back without a restart.
	if st := c.Nodes[old].Srv.Node().Status(); st.State == "Shutdown" {
		t.Fatalf("removed leader's raft state %q: it removed itself instead of handing over", st.State)
	}
	// The two remaining nodes still take writes.
	q := griddpb.NewQueueClient(dialRaw(t, c.Nodes[survivor].Cfg.GRPCAddr))
	if _, err := q.CreateSession(ctx, &griddpb.CreateSessionRequest{RequestId: "after-remove"}); err != nil {
		t.Fatalf("create a session after removing the leader: %v", err)
	}
	st, err := griddpb.NewClusterClient(dialRaw(t, c.Nodes[survivor].Cfg.GRPCAddr)).Status(ctx, &griddpb.ClusterStatusRequest{})
	if err != nil || len(st.Members) != 2 {
		t.Fatalf("status after remove: %v %v, want 2 members", st, err)
	}
}
