package server_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
)

// echoHandler returns "done:" + payload, so the test can check that each
// result belongs to its task.
func echoHandler(_ context.Context, t worker.Task) ([]byte, error) {
	return append([]byte("done:"), t.Payload...), nil
}

// startWorkers runs n SDK workers against the cluster until the test ends.
func startWorkers(t *testing.T, addrs []string, n int, h worker.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = worker.Run(ctx, worker.Options{Addrs: addrs, WorkerID: fmt.Sprintf("w%d", i), Concurrency: 4}, h)
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// collector counts, per task id, the results the application received.
type collector struct {
	mu       sync.Mutex
	got      map[string]int
	bad      []string
	received atomic.Int64
}

func collect(t *testing.T, s *client.Session, expect func(id string, payload []byte) bool) *collector {
	c := &collector{got: map[string]int{}}
	go func() {
		for r := range s.Results() {
			c.mu.Lock()
			c.got[r.TaskID]++
			if !expect(r.TaskID, r.Payload) {
				c.bad = append(c.bad, r.TaskID)
			}
			c.mu.Unlock()
			c.received.Add(1)
		}
	}()
	return c
}

func taskID(i int) string { return fmt.Sprintf("task-%06d", i) }

// TestLeaderKillLosesNothing is the product's promise at layer 1: 20,000
// tasks submitted in batches while the leader is killed (no graceful step)
// half-way; every acknowledged task has exactly one result at the
// application, no result for a task never submitted, and the killed node
// restarts from its data dir and catches up.
func TestLeaderKillLosesNothing(t *testing.T) {
	total, batch := 20_000, 100
	if testing.Short() {
		total = 4_000
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

	// Four submitters; the acknowledged set is what the promise covers.
	var acked sync.Map
	var wg sync.WaitGroup
	var submitErr atomic.Value
	per := total / 4
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for start := g * per; start < (g+1)*per; start += batch {
				tasks := make([]client.Task, batch)
				for i := range tasks {
					id := taskID(start + i)
					tasks[i] = client.Task{ID: id, Payload: []byte(id)}
				}
				if _, err := sess.Submit(ctx, tasks); err != nil {
					submitErr.Store(err)
					return
				}
				for _, tk := range tasks {
					acked.Store(tk.ID, true)
				}
			}
		}()
	}

	// Kill the leader once a third of the results arrived.
	c.WaitFor("a third of the results", 2*time.Minute, func() bool { return col.received.Load() >= int64(total/3) })
	leader := c.Leader()
	if leader < 0 {
		t.Fatal("no leader at kill time")
	}
	before := col.received.Load()
	killedAt := time.Now()
	c.Kill(leader)
	t.Logf("killed leader n%d after %d results", leader+1, before)
	c.WaitFor("a result after the kill", time.Minute, func() bool { return col.received.Load() > before })
	t.Logf("first result after the kill: %v", time.Since(killedAt))

	wg.Wait()
	if err := submitErr.Load(); err != nil {
		t.Fatalf("submit failed: %v", err)
	}
	c.WaitFor("every result", 2*time.Minute, func() bool { return col.received.Load() >= int64(total) })

	col.mu.Lock()
	missing, dup := 0, 0
	acked.Range(func(k, _ any) bool {
		switch n := col.got[k.(string)]; {
		case n == 0:
			missing++
		case n > 1:
			dup++
		}
		return true
	})
	unexpected := 0
	for id := range col.got {
		if _, ok := acked.Load(id); !ok {
			unexpected++
		}
	}
	distinct, bad := len(col.got), len(col.bad)
	col.mu.Unlock()
	t.Logf("results=%d distinct=%d stats=%+v", col.received.Load(), distinct, sess.Stats())
	if missing != 0 || dup != 0 || unexpected != 0 || bad != 0 {
		t.Fatalf("lost=%d duplicated=%d unexpected=%d wrong payloads=%d", missing, dup, unexpected, bad)
	}
	if distinct != total {
		t.Fatalf("distinct results = %d, want %d", distinct, total)
	}

	// Every result the application took is acknowledged, so the
	// replicated state lets go of it (results sent before their commit
	// included: their acks must not overtake them in the log).
	c.WaitFor("every result acknowledged", 30*time.Second, func() bool {
		l := c.Leader()
		if l < 0 {
			return false
		}
		info, ok := c.Nodes[l].Srv.Node().FSM().Session(sess.ID())
		return ok && info.Pending == 0 && info.ResultsUnacked == 0 && info.Completed == uint64(total)
	})

	// The killed node comes back from its data dir and catches up.
	c.Restart(leader)
	c.WaitConverged()
	restarted := c.Nodes[leader].Srv.Node().FSM()
	info, ok := restarted.Session(sess.ID())
	if !ok || info.Submitted != uint64(total) || info.Pending != 0 {
		t.Fatalf("restarted node: session %v submitted=%d pending=%d, want %d and 0", ok, info.Submitted, info.Pending, total)
	}
}

// TestWholeClusterRestart: tasks acknowledged but not yet executed survive
// a crash of every node and are all executed after the restart.
func TestWholeClusterRestart(t *testing.T) {
	const total = 2_000
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := client.Dial(ctx, c.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sess, err := cl.CreateSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for start := 0; start < total; start += 500 {
		tasks := make([]client.Task, 500)
		for i := range tasks {
			id := taskID(start + i)
			tasks[i] = client.Task{ID: id, Payload: []byte(id)}
		}
		if _, err := sess.Submit(ctx, tasks); err != nil {
			t.Fatal(err)
		}
	}
	id := sess.ID()
	if err := sess.Detach(); err != nil {
		t.Fatal(err)
	}
	c.KillAll()
	for i := range c.Nodes {
		c.Restart(i)
	}
	c.WaitLeader()

	startWorkers(t, c.Addrs(), 2, echoHandler)
	sess2, err := cl.OpenSession(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	col := collect(t, sess2, func(id string, p []byte) bool { return string(p) == "done:"+id })
	c.WaitFor("every result after the restart", time.Minute, func() bool { return col.received.Load() >= total })
	col.mu.Lock()
	defer col.mu.Unlock()
	for i := 0; i < total; i++ {
		if n := col.got[taskID(i)]; n != 1 {
			t.Fatalf("task %s: %d results, want 1", taskID(i), n)
		}
	}
	if len(col.bad) != 0 {
		t.Fatalf("wrong payloads for %v", col.bad)
	}
}
