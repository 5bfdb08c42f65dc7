package server_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/server"
)

// nemesisSeed returns GRIDD_SEED if set, so that a failing schedule can be
// replayed, and a fresh seed otherwise.
func nemesisSeed(t *testing.T) uint64 {
	if s := os.Getenv("GRIDD_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("GRIDD_SEED=%q: %v", s, err)
		}
		return v
	}
	return rand.Uint64()
}

// TestNemesis is the in-process counterpart of the jepsen suite: while
// clients keep submitting, a seeded schedule of faults hits the cluster —
// the leader killed, a random node killed, the leader cut off from the
// others, every node killed at once, a follower removed from the cluster and
// added back — each followed by a heal and a check that work goes on. At the end every acknowledged task has exactly one
// result at the application, none is unexpected, and the replicas agree.
func TestNemesis(t *testing.T) {
	seed := nemesisSeed(t)
	t.Logf("seed %d (replay with GRIDD_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	rounds := 6
	if testing.Short() {
		rounds = 3
	}
	// Frequent snapshots and short trailing logs, so that restarted nodes
	// catch up by snapshot installs, with gaps in their logs.
	c := testcluster.Start(t, 3, testcluster.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.SnapshotThreshold = 256
		cfg.TrailingLogs = 64
		cfg.SnapshotInterval = 200 * time.Millisecond
	}})
	startWorkers(t, c.Addrs(), 3, echoHandler)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
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

	// Two submitters keep the cluster busy until the faults are over.
	var acked sync.Map
	var ackedN atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; ; b++ {
				select {
				case <-stop:
					return
				default:
				}
				tasks := make([]client.Task, 50)
				for i := range tasks {
					id := fmt.Sprintf("g%d-b%05d-t%02d", g, b, i)
					tasks[i] = client.Task{ID: id, Payload: []byte(id)}
				}
				if _, err := sess.Submit(ctx, tasks); err != nil {
					t.Errorf("submit: %v", err)
					return
				}
				for _, tk := range tasks {
					acked.Store(tk.ID, true)
				}
				ackedN.Add(int64(len(tasks)))
			}
		}()
	}
	progress := func(what string) {
		t.Helper()
		from := col.received.Load()
		c.WaitFor(what, time.Minute, func() bool { return col.received.Load() >= from+200 })
	}
	progress("first results")

	for r := 0; r < rounds; r++ {
		leader := c.WaitLeader()
		switch fault := rng.IntN(5); fault {
		case 0:
			t.Logf("round %d: kill the leader n%d", r, leader+1)
			c.Kill(leader)
			progress("progress without the old leader")
			c.Restart(leader)
		case 1:
			victim := rng.IntN(3)
			t.Logf("round %d: kill n%d (leader n%d)", r, victim+1, leader+1)
			c.Kill(victim)
			progress("progress with a node down")
			c.Restart(victim)
		case 2:
			t.Logf("round %d: cut the leader n%d off from the others", r, leader+1)
			c.Partition(leader)
			c.WaitFor("a leader in the majority", time.Minute, func() bool {
				l := c.Leader()
				return l >= 0 && l != leader
			})
			progress("progress in the majority")
			c.Heal()
		case 3:
			t.Logf("round %d: kill every node, then restart them", r)
			c.KillAll()
			for i := range c.Nodes {
				c.Restart(i)
			}
		case 4:
			victim := (leader + 1 + rng.IntN(2)) % 3
			v := c.Nodes[victim]
			raftAddr := v.Srv.Node().RaftAddr()
			t.Logf("round %d: remove n%d from the cluster, then add it back", r, victim+1)
			if err := c.Nodes[leader].Srv.Node().Remove(ctx, v.Cfg.ID); err != nil {
				t.Fatalf("remove n%d: %v", victim+1, err)
			}
			progress("progress with two members")
			c.WaitFor("n"+strconv.Itoa(victim+1)+" added back", time.Minute, func() bool {
				l := c.Leader()
				return l >= 0 && c.Nodes[l].Srv.Node().Join(ctx, v.Cfg.ID, raftAddr, v.Cfg.GRPCAddr) == nil
			})
			c.WaitMembers(3)
		}
		progress(fmt.Sprintf("progress after round %d", r))
	}

	close(stop)
	wg.Wait()
	total := ackedN.Load()
	c.WaitFor("every acknowledged task's result", 2*time.Minute, func() bool { return col.received.Load() >= total })
	c.WaitConverged()

	col.mu.Lock()
	defer col.mu.Unlock()
	lost, dup, unexpected := 0, 0, 0
	acked.Range(func(k, _ any) bool {
		switch n := col.got[k.(string)]; {
		case n == 0:
			lost++
		case n > 1:
			dup++
		}
		return true
	})
	for id := range col.got {
		if _, ok := acked.Load(id); !ok {
			unexpected++
		}
	}
	t.Logf("acked=%d results=%d stats=%+v", total, col.received.Load(), sess.Stats())
	for i, n := range c.Nodes {
		st := n.Srv.Node().Status()
		t.Logf("n%d: last snapshot %d, snapshots restored since start %d", i+1, st.LastSnapshotIndex, st.SnapshotRestores)
	}
	if lost != 0 || dup != 0 || unexpected != 0 || len(col.bad) != 0 {
		t.Fatalf("seed %d: lost=%d duplicated=%d unexpected=%d wrong payloads=%d", seed, lost, dup, unexpected, len(col.bad))
	}
}
