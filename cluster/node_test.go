package cluster_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/gridd/gridd/cluster"
	"github.com/gridd/gridd/cluster/clustertest"
	"github.com/gridd/gridd/fsm"
)

func TestSingleNodeBootstrapAndPropose(t *testing.T) {
	c := clustertest.Start(t, 1, clustertest.Options{})
	n := c.WaitForLeader()
	if got := nextChange(t, n.LeadershipChanges()); !got {
		t.Fatal("LeadershipChanges: got false, want true once the leader took office")
	}
	mustPropose(t, c, createSessionCmd("s1"))
	ids := taskIDs("t", 5)
	enqueue(t, c, "s1", ids...)
	requireTasks(t, c, "s1", ids)

	st := n.Status()
	if st.State != "Leader" || st.LeaderID != "node0" || st.LeaderRaftAddr != n.RaftAddr() {
		t.Fatalf("status: state %q leader %q at %q, want Leader node0 at %s", st.State, st.LeaderID, st.LeaderRaftAddr, n.RaftAddr())
	}
	if st.LastLogIndex < st.CommitIndex || st.CommitIndex == 0 || st.Term == 0 {
		t.Fatalf("status indexes inconsistent: %+v", st)
	}
	if len(st.Members) != 1 || st.Members[0].GRPCAddr != "node0.invalid:1337" || !st.Members[0].Leader || st.Members[0].Suffrage != "Voter" {
		t.Fatalf("status members: %+v", st.Members)
	}
	if got := n.LeaderGRPCAddr(); got != "node0.invalid:1337" {
		t.Fatalf("LeaderGRPCAddr = %q", got)
	}
	hash := n.FSM().Hash()

	// A restart with Bootstrap still set must not bootstrap again: it
	// rejoins with its state and leads again.
	c.Close(0)
	if got := nextChange(t, n.LeadershipChanges()); got {
		t.Fatal("LeadershipChanges after Close: got true, want false")
	}
	if _, err := n.Propose(testCtx(t), createSessionCmd("s2")); !errors.Is(err, cluster.ErrClosed) {
		t.Fatalf("Propose after Close: %v, want ErrClosed", err)
	}
	n = c.Restart(0)
	c.WaitForLeader()
	requireTasks(t, c, "s1", ids)
	if got := n.FSM().Hash(); got != hash {
		t.Fatalf("hash after restart %q, want %q", got, hash)
	}
	if got := n.Status().LastLogIndex; got < st.LastLogIndex {
		t.Fatalf("last log index after restart %d < %d", got, st.LastLogIndex)
	}
}

func TestDataDirInUse(t *testing.T) {
	c := clustertest.Start(t, 1, clustertest.Options{})
	_, err := cluster.Open(cluster.Config{
		ID: "intruder", DataDir: c.DataDir(0), RaftAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler),
	}, fsm.New(fsm.Options{}))
	if err == nil || !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), "raft.db") {
		t.Fatalf("second Open on a data dir in use: %v, want a 'data dir in use' error naming raft.db", err)
	}
	// The first node is unharmed.
	mustPropose(t, c, createSessionCmd("s1"))
}

func TestOpenValidatesConfig(t *testing.T) {
	f := fsm.New(fsm.Options{})
	for name, cfg := range map[string]cluster.Config{
		"no id":       {DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0"},
		"no data dir": {ID: "a", RaftAddr: "127.0.0.1:0"},
		"no address":  {ID: "a", DataDir: t.TempDir()},
		"bad timings": {ID: "a", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", HeartbeatTimeout: 100e6, LeaderLeaseTimeout: 200e6},
	} {
		cfg.Logger = slog.New(slog.DiscardHandler)
		if n, err := cluster.Open(cfg, f); err == nil {
			_ = n.Close()
			t.Errorf("%s: Open succeeded", name)
		}
	}
	if _, err := cluster.Open(cluster.Config{ID: "a", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0"}, nil); err == nil {
		t.Error("Open with a nil fsm succeeded")
	}
}
