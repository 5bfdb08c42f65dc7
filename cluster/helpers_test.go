package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gridd/gridd/cluster"
	"github.com/gridd/gridd/cluster/clustertest"
	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/fsm/fsmpb"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
	t.Cleanup(cancel)
	return ctx
}

func createSessionCmd(id string) *fsmpb.Command {
	return &fsmpb.Command{
		NowUnixMs: time.Now().UnixMilli(),
		RequestId: "create/" + id,
		Cmd: &fsmpb.Command_CreateSession{CreateSession: &fsmpb.CreateSession{
			SessionId: id,
			App:       "clustertest",
			Attrs: &fsmpb.SessionAttrs{
				Priority:                    fsm.DefaultPriority,
				IdleTimeoutMs:               fsm.DefaultIdleTimeoutMs,
				MaxInflightBatchesPerWorker: fsm.DefaultMaxInflight,
				MaxAttempts:                 fsm.DefaultMaxAttempts,
			},
		}},
	}
}

func enqueueCmd(session string, ids ...string) *fsmpb.Command {
	e := &fsmpb.Enqueue{SessionId: session}
	for _, id := range ids {
		e.Tasks = append(e.Tasks, &fsmpb.Task{Id: id, Payload: []byte("payload-" + id), Priority: fsm.DefaultPriority})
	}
	return &fsmpb.Command{NowUnixMs: time.Now().UnixMilli(), Cmd: &fsmpb.Command_Enqueue{Enqueue: e}}
}

// mustPropose proposes on the current leader through elections and fails
// the test on an error or a business error in the response.
func mustPropose(t *testing.T, c *clustertest.Cluster, cmd *fsmpb.Command) fsm.Response {
	t.Helper()
	resp, err := c.Propose(testCtx(t), cmd)
	if err != nil {
		t.Fatalf("propose: %v", err)
	}
	if resp.Err != nil {
		t.Fatalf("propose: fsm error: %v", resp.Err)
	}
	return resp
}

// enqueue submits one task per id, one entry each, and checks that each
// was accepted (a retry after an unknown outcome may find it a duplicate).
func enqueue(t *testing.T, c *clustertest.Cluster, session string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		resp := mustPropose(t, c, enqueueCmd(session, id))
		if resp.Accepted+resp.Duplicates != 1 {
			t.Fatalf("enqueue %s: accepted %d, duplicates %d, want one of them 1", id, resp.Accepted, resp.Duplicates)
		}
	}
}

func taskIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return ids
}

// requireTasks fails unless every live node has every task pending.
func requireTasks(t *testing.T, c *clustertest.Cluster, session string, ids []string) {
	t.Helper()
	for _, i := range c.Live() {
		n := c.Node(i)
		for _, id := range ids {
			if !n.FSM().TaskPending(session, id) {
				t.Fatalf("%s lost task %s/%s", n.ID(), session, id)
			}
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(clustertest.Timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func follower(t *testing.T, c *clustertest.Cluster) (int, *cluster.Node) {
	t.Helper()
	leader := c.WaitForLeader()
	for _, i := range c.Live() {
		if n := c.Node(i); n.ID() != leader.ID() {
			return i, n
		}
	}
	t.Fatal("no follower")
	return -1, nil
}

// nextChange reads the next value from a LeadershipChanges channel.
func nextChange(t *testing.T, ch <-chan bool) bool {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(clustertest.Timeout):
		t.Fatal("timed out waiting for a leadership change")
		return false
	}
}
