package cluster_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/gridd/gridd/cluster"
	"github.com/gridd/gridd/cluster/clustertest"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomized tests (0: random)")

func seed(t *testing.T) uint64 {
	s := *seedFlag
	if s == 0 {
		s = rand.Uint64()
	}
	t.Logf("seed %d (replay with -seed %d)", s, s)
	return s
}

func TestThreeNodesLeaderAndFollowers(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.WaitForLeader()
	mustPropose(t, c, createSessionCmd("s1"))
	ids := taskIDs("t", 10)
	enqueue(t, c, "s1", ids...)

	_, f := follower(t, c)
	if _, err := f.Propose(testCtx(t), enqueueCmd("s1", "x")); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("Propose on a follower: %v, want ErrNotLeader", err)
	}
	if err := f.Barrier(testCtx(t)); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("Barrier on a follower: %v, want ErrNotLeader", err)
	}
	if err := f.VerifyLeader(testCtx(t)); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("VerifyLeader on a follower: %v, want ErrNotLeader", err)
	}
	if err := leader.VerifyLeader(testCtx(t)); err != nil {
		t.Fatalf("VerifyLeader on the leader: %v", err)
	}
	if id, addr := f.Leader(); id != leader.ID() || addr != leader.RaftAddr() {
		t.Fatalf("follower sees leader %s at %s, want %s at %s", id, addr, leader.ID(), leader.RaftAddr())
	}
	want := leader.GRPCAddr()
	waitFor(t, "followers to resolve the leader's gRPC address", func() bool {
		for _, i := range c.Live() {
			if c.Node(i).LeaderGRPCAddr() != want {
				return false
			}
		}
		return true
	})
	c.EnsureSame()
	requireTasks(t, c, "s1", ids)
	st := f.Status()
	if len(st.Members) != 3 {
		t.Fatalf("follower status members: %+v", st.Members)
	}
	for _, m := range st.Members {
		if m.GRPCAddr != m.ID+".invalid:1337" || m.Suffrage != "Voter" || m.Leader != (m.ID == leader.ID()) {
			t.Fatalf("member %+v", m)
		}
	}
}

// TestKillLeaderUnderLoad kills the leader while clients submit, and checks
// that every acknowledged task survives on every node, the restarted old
// leader included.
func TestKillLeaderUnderLoad(t *testing.T) {
	rng := rand.New(rand.NewPCG(seed(t), 0))
	c := clustertest.Start(t, 3, clustertest.Options{})
	mustPropose(t, c, createSessionCmd("s1"))

	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("w%d-%05d", w, i)
				// Retries reuse the task id, so a repeat is a duplicate.
				resp, err := c.Propose(ctx, enqueueCmd("s1", id))
				if err == nil && resp.Err == nil {
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
				}
			}
		}()
	}
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	warmup := 20 + rng.IntN(30) // where in the stream the kill lands
	waitFor(t, "writes before the kill", func() bool { return ackedCount() >= warmup })
	old := c.WaitForLeader()
	oldIdx := c.Index(old.ID())
	c.Kill(oldIdx)
	before := ackedCount()
	waitFor(t, "writes after the kill", func() bool { return ackedCount() >= before+30 })
	if nl := c.WaitForLeader(); nl.ID() == old.ID() {
		t.Fatalf("leader is still %s after it was killed", nl.ID())
	}
	c.Restart(oldIdx)
	waitFor(t, "writes after the restart", func() bool { return ackedCount() >= before+60 })
	cancel()
	wg.Wait()

	c.EnsureSame()
	requireTasks(t, c, "s1", acked)
	t.Logf("%d tasks acknowledged", len(acked))
}

// TestWholeClusterRestart kills every node, with one of them holding a
// snapshot, and checks that the restarted cluster kept every entry.
func TestWholeClusterRestart(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	mustPropose(t, c, createSessionCmd("s1"))
	early := taskIDs("early", 10)
	enqueue(t, c, "s1", early...)
	if err := c.Node(1).Snapshot(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	late := taskIDs("late", 10)
	enqueue(t, c, "s1", late...)
	committed := c.WaitForLeader().Status().CommitIndex
	c.WaitForApplied(committed)
	hash := c.Node(0).FSM().Hash()

	for i := range 3 {
		c.Kill(i)
	}
	for i := range 3 {
		c.Restart(i)
	}
	c.WaitForLeader()
	c.EnsureSame()
	requireTasks(t, c, "s1", append(early, late...))
	if got := c.Node(0).FSM().Hash(); got != hash {
		t.Fatalf("hash after restart %q, want %q", got, hash)
	}
	if got := c.Node(1).Status().SnapshotRestores; got != 1 {
		t.Fatalf("node1 restored %d snapshots at startup, want 1", got)
	}
	// Writes go on.
	enqueue(t, c, "s1", "after")
}

// TestLaggingFollowerInstallsSnapshot compacts the leader's log past a
// stopped follower, which must then catch up from a snapshot.
func TestLaggingFollowerInstallsSnapshot(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{
		Configure: func(_ int, cfg *cluster.Config) {
			// Snapshots only when the test asks, few trailing entries.
			cfg.SnapshotThreshold = 1 << 20
			cfg.SnapshotInterval = time.Hour
			cfg.TrailingLogs = 4
		},
	})
	mustPropose(t, c, createSessionCmd("s1"))
	fi, _ := follower(t, c)
	c.Kill(fi)
	ids := taskIDs("t", 40)
	enqueue(t, c, "s1", ids...)
	leader := c.WaitForLeader()
	if err := leader.Snapshot(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	enqueue(t, c, "s1", "after-snapshot")
	f := c.Restart(fi)
	if got := f.Status().SnapshotRestores; got != 0 {
		t.Fatalf("follower restored %d snapshots at startup, want 0", got)
	}
	c.EnsureSame()
	requireTasks(t, c, "s1", append(ids, "after-snapshot"))
	if got := f.Status().SnapshotRestores; got != 1 {
		t.Fatalf("follower installed %d snapshots, want 1", got)
	}
	if got, want := f.Status().LastSnapshotIndex, leader.Status().LastSnapshotIndex; got < want {
		t.Fatalf("follower's last snapshot index %d < leader's %d", got, want)
	}
	// The follower's log now has a gap under the installed snapshot (its
	// old entries, then the new ones): killed and restarted, it must
	// start and serve, not call its log corrupt.
	enqueue(t, c, "s1", "after-install")
	c.EnsureSame()
	c.Kill(fi)
	c.Restart(fi)
	c.EnsureSame()
	requireTasks(t, c, "s1", append(ids, "after-snapshot", "after-install"))
}

func TestGroupCommit(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	mustPropose(t, c, createSessionCmd("s1"))
	ctx := testCtx(t)
	const n = 200
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Through elections a retry may find its task already there.
			resp, err := c.Propose(ctx, enqueueCmd("s1", fmt.Sprintf("t%03d", i)))
			if err == nil && resp.Accepted+resp.Duplicates != 1 {
				err = fmt.Errorf("accepted %d, duplicates %d", resp.Accepted, resp.Duplicates)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent propose: %v", err)
		}
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("t%03d", i)
	}
	c.EnsureSame()
	requireTasks(t, c, "s1", ids)
}
