package server_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestMembershipChangesUnderLoad adds a fourth node and then removes the
// leader (which hands over first) while a client submits and collects:
// every acknowledged task has exactly one result, and the new node holds
// the whole session.
func TestMembershipChangesUnderLoad(t *testing.T) {
	total, batch := 6_000, 100
	if testing.Short() {
		total = 3_000
	}
	c := testcluster.Start(t, 3, testcluster.Options{})
	startWorkers(t, c.Addrs(), 4, echoHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl, err := client.Dial(ctx, c.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sess, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{})
	if err != nil {
		t.Fatal(err)
	}
	col := collect(t, sess, func(id string, p []byte) bool { return string(p) == "done:"+id })

	load := startLoad(ctx, sess, total, batch)

	// Add n4 at a third of the results.
	c.WaitFor("a third of the results", 2*time.Minute, func() bool { return col.received.Load() >= int64(total/3) })
	n4, err := server.Start(context.Background(), server.Config{
		ID: "n4", DataDir: filepath.Join(t.TempDir(), "n4"), GRPCAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		Join:             c.Addrs(),
		HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond, LeaderLeaseTimeout: 150 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n4.Kill() })
	c.WaitMembers(4)
	t.Logf("n4 joined after %d results", col.received.Load())

	// Remove the leader at two thirds, through n4 (forwarded to the leader).
	c.WaitFor("two thirds of the results", 2*time.Minute, func() bool { return col.received.Load() >= int64(2*total/3) })
	old := c.WaitLeader()
	cc, err := grpc.NewClient(n4.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = griddpb.NewClusterClient(cc).Remove(rctx, &griddpb.RemoveRequest{Id: c.Nodes[old].Cfg.ID})
	rcancel()
	if err != nil {
		t.Fatalf("remove the leader n%d: %v", old+1, err)
	}
	c.Stop(old)
	t.Logf("removed and stopped leader n%d after %d results", old+1, col.received.Load())

	load.wait(t)
	c.WaitFor("every result", 2*time.Minute, func() bool { return col.received.Load() >= int64(total) })
	checkExactlyOnce(t, col, &load.acked, total)
	c.WaitFor("n4 to hold the whole session", 30*time.Second, func() bool {
		info, ok := n4.Node().FSM().Session(sess.ID())
		return ok && info.Submitted == uint64(total)
	})
	if st := n4.Node().Status(); len(st.Members) != 3 {
		t.Fatalf("n4 sees %d members, want 3 after the removal", len(st.Members))
	}
}
