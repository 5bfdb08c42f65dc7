package server_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridd/gridd/dispatch"
	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
	"github.com/gridd/gridd/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// schedRig is a one-node cluster with workers that run one task at a time,
// whose tasks can be held at a per-session gate, so that tests can see
// where the scheduler put the workers while nothing moves.
type schedRig struct {
	t  testing.TB
	c  *testcluster.Cluster
	cl *client.Client
	q  griddpb.QueueClient

	mu        sync.Mutex
	gates     map[string]chan struct{} // session -> closed to let tasks finish
	started   map[string]int           // session -> tasks started
	done      map[string]int           // session -> tasks finished
	firstAt   map[string]map[string]int
	firstTime map[string]time.Time     // session -> when its first task started
	delays    map[string]time.Duration // session -> how long its tasks run, instead of a gate
	stopped   map[string]int           // session -> tasks cancelled while running
	cancelled atomic.Int64             // tasks whose context was cancelled while held
}

func newSchedRig(t testing.TB, mode dispatch.Preemption, configure func(*testcluster.Options)) *schedRig {
	return newSchedCluster(t, 1, mode, configure)
}

func newSchedCluster(t testing.TB, nodes int, mode dispatch.Preemption, configure func(*testcluster.Options)) *schedRig {
	opts := testcluster.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.Preemption = mode
	}}
	if configure != nil {
		configure(&opts)
	}
	c := testcluster.Start(t, nodes, opts)
	ctx, cancel := context.WithCancel(context.Background())
	cl, err := client.Dial(ctx, c.Addrs(), client.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	r := &schedRig{t: t, c: c, cl: cl, q: griddpb.NewQueueClient(dialRawTB(t, c.Nodes[0].Cfg.GRPCAddr)),
		gates: map[string]chan struct{}{}, started: map[string]int{}, done: map[string]int{},
		firstAt: map[string]map[string]int{}, firstTime: map[string]time.Time{}, delays: map[string]time.Duration{},
		stopped: map[string]int{}}
	t.Cleanup(func() {
		_ = cl.Close()
		cancel()
	})
	return r
}

// workers starts n workers of concurrency 1.
func (r *schedRig) workers(n int) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Go(func() {
			_ = worker.Run(ctx, worker.Options{Addrs: r.c.Addrs(), WorkerID: fmt.Sprintf("w%d", i),
				Concurrency: 1, Logger: quiet, HeartbeatInterval: 200 * time.Millisecond}, r.handle)
		})
	}
	r.t.Cleanup(func() {
		r.openAll()
		cancel()
		wg.Wait()
	})
}

func (r *schedRig) handle(ctx context.Context, tk worker.Task) ([]byte, error) {
	r.mu.Lock()
	if r.started[tk.SessionID] == 0 {
		// What every other session had finished when this one started.
		snap := map[string]int{}
		for s, n := range r.done {
			snap[s] = n
		}
		r.firstAt[tk.SessionID] = snap
		r.firstTime[tk.SessionID] = time.Now()
	}
	r.started[tk.SessionID]++
	gate, delay := r.gates[tk.SessionID], r.delays[tk.SessionID]
	r.mu.Unlock()
	var timer <-chan time.Time
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		gate, timer = nil, t.C
	}
	if gate != nil || timer != nil {
		select {
		case <-gate:
		case <-timer:
		case <-ctx.Done():
			r.cancelled.Add(1)
			r.mu.Lock()
			r.stopped[tk.SessionID]++
			r.mu.Unlock()
			return nil, ctx.Err()
		}
	}
	r.mu.Lock()
	r.done[tk.SessionID]++
	r.mu.Unlock()
	return []byte(tk.ID), nil
}

// session creates a session whose tasks wait at a closed gate, and submits
// n tasks. One batch in flight per worker keeps each worker's share of
// the tasks at 100 (the dispatcher's batch size).
func (r *schedRig) session(attrs *griddpb.SessionAttributes, n int) (*client.Session, *sessResults) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	attrs.MaxInflightBatchesPerWorker = 1
	s, err := r.cl.CreateSession(ctx, attrs)
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.gates[s.ID()] = make(chan struct{})
	r.mu.Unlock()
	res := &sessResults{got: map[string]int{}, attempts: map[int32]int{}}
	go func() {
		for x := range s.Results() {
			res.mu.Lock()
			res.got[x.TaskID]++
			res.attempts[x.Attempt]++
			res.mu.Unlock()
		}
	}()
	r.submit(s, "t", n)
	return s, res
}

func (r *schedRig) submit(s *client.Session, prefix string, n int) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tasks := make([]client.Task, n)
	for i := range tasks {
		tasks[i] = client.Task{ID: fmt.Sprintf("%s%05d", prefix, i)}
	}
	if _, err := s.Submit(ctx, tasks); err != nil {
		r.t.Fatal(err)
	}
}

func (r *schedRig) open(s *client.Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if g := r.gates[s.ID()]; g != nil {
		close(g)
		r.gates[s.ID()] = nil
	}
}

func (r *schedRig) openAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, g := range r.gates {
		if g != nil {
			close(g)
			r.gates[id] = nil
		}
	}
}

func (r *schedRig) startedIn(s *client.Session) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started[s.ID()]
}

// bound counts the leader's workers per bound session ("" for idle).
func (r *schedRig) bound() map[string]int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, err := r.q.ListWorkers(ctx, &griddpb.ListWorkersRequest{})
	if err != nil {
		return nil
	}
	out := map[string]int{}
	for _, w := range ws.Workers {
		out[w.SessionId]++
	}
	return out
}

func (r *schedRig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	r.c.WaitFor(what, time.Minute, cond)
}

func dialRawTB(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

type sessResults struct {
	mu       sync.Mutex
	got      map[string]int
	attempts map[int32]int
}

func (s *sessResults) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// check fails unless every one of n tasks has exactly one result, from its
// first attempt: a preempted task goes back without counting an attempt.
func (s *sessResults) check(t testing.TB, what string, n int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.got) != n {
		t.Fatalf("%s: %d tasks have a result, want %d", what, len(s.got), n)
	}
	for id, k := range s.got {
		if k != 1 {
			t.Fatalf("%s: task %s delivered %d times", what, id, k)
		}
	}
	if s.attempts[1] != n {
		t.Fatalf("%s: results by attempt %v, want all %d from attempt 1", what, s.attempts, n)
	}
}

// TestSchedulerPriority: two sessions of different priority have work when
// four workers arrive; the high one gets all four, and the low one gets a
// worker only once the high one has nothing left to hand out.
func TestSchedulerPriority(t *testing.T) {
	r := newSchedRig(t, dispatch.PreemptDrain, nil)
	const n = 1000
	high, highRes := r.session(&griddpb.SessionAttributes{Priority: 9}, n)
	low, lowRes := r.session(&griddpb.SessionAttributes{Priority: 1}, n)
	r.workers(4)

	r.waitFor("four high tasks running", func() bool { return r.startedIn(high) == 4 })
	if b := r.bound(); b[high.ID()] != 4 {
		t.Fatalf("workers per session %v: want all 4 on the high-priority session", b)
	}
	if k := r.startedIn(low); k != 0 {
		t.Fatalf("%d low-priority tasks started while the high-priority session had work", k)
	}

	r.openAll()
	r.waitFor("every result", func() bool { return highRes.count() == n && lowRes.count() == n })
	highRes.check(t, "high", n)
	lowRes.check(t, "low", n)
	// A worker holds at most one batch of 100 here, so the low session can
	// only have started once all but 4*100 high tasks were done.
	r.mu.Lock()
	before := r.firstAt[low.ID()][high.ID()]
	r.mu.Unlock()
	t.Logf("high-priority tasks finished when the first low-priority task started: %d of %d", before, n)
	if before < n-4*100 {
		t.Fatalf("the low session started when only %d of %d high tasks were done", before, n)
	}
}

// TestSchedulerPreemption: a preemptible low-priority session holds all four
// workers, with its tasks stuck; a high-priority session arrives. In drain
// mode the workers are bound to it but finish what they hold (nothing is
// cancelled); in immediate mode the high session's tasks run while the low
// ones are still stuck, and the aborted low tasks run again later without
// counting an attempt. Either way every task has exactly one result.
func TestSchedulerPreemption(t *testing.T) {
	for _, mode := range []dispatch.Preemption{dispatch.PreemptDrain, dispatch.PreemptImmediate} {
		t.Run(mode.String(), func(t *testing.T) {
			r := newSchedRig(t, mode, nil)
			const n = 1000
			low, lowRes := r.session(&griddpb.SessionAttributes{Priority: 1, Preemptible: true}, n)
			r.workers(4)
			r.waitFor("four low tasks running", func() bool { return r.startedIn(low) == 4 })

			high, highRes := r.session(&griddpb.SessionAttributes{Priority: 9}, n)
			r.waitFor("every worker bound to the high-priority session", func() bool {
				return r.bound()[high.ID()] == 4
			})
			switch mode {
			case dispatch.PreemptDrain:
				if k := r.cancelled.Load(); k != 0 {
					t.Fatalf("drain cancelled %d running tasks", k)
				}
			case dispatch.PreemptImmediate:
				r.waitFor("high tasks running while the low ones are stuck", func() bool {
					return r.startedIn(high) >= 4
				})
				if k := r.cancelled.Load(); k != 4 {
					t.Fatalf("immediate preemption cancelled %d running tasks, want the 4 that ran", k)
				}
			}

			r.open(low)
			r.open(high)
			r.waitFor("every result", func() bool { return highRes.count() == n && lowRes.count() == n })
			highRes.check(t, "high", n)
			lowRes.check(t, "low", n)
		})
	}
}

// TestSchedulerMinWorkers: a high-priority, non-preemptible session holds
// every worker; a low-priority session with min_workers 2 arrives and gets
// exactly two of them (drained, so nothing is cancelled), no more.
func TestSchedulerMinWorkers(t *testing.T) {
	r := newSchedRig(t, dispatch.PreemptImmediate, nil)
	const n = 1000
	high, highRes := r.session(&griddpb.SessionAttributes{Priority: 9}, n)
	r.workers(4)
	r.waitFor("four high tasks running", func() bool { return r.startedIn(high) == 4 })

	low, lowRes := r.session(&griddpb.SessionAttributes{Priority: 1, MinWorkers: 2}, n)
	r.waitFor("two workers on the low session", func() bool { return r.bound()[low.ID()] >= 2 })
	if b := r.bound(); b[low.ID()] != 2 || b[high.ID()] != 2 {
		t.Fatalf("workers per session %v: want 2 and 2", b)
	}
	if k := r.cancelled.Load(); k != 0 {
		t.Fatalf("honouring min_workers cancelled %d running tasks", k)
	}
	r.openAll()
	r.waitFor("every result", func() bool { return highRes.count() == n && lowRes.count() == n })
	highRes.check(t, "high", n)
	lowRes.check(t, "low", n)
}

// TestSchedulerIdleRelease: a session with nothing to do for its idle
// timeout releases its workers and stays open; new tasks bring them back.
func TestSchedulerIdleRelease(t *testing.T) {
	r := newSchedRig(t, dispatch.PreemptDrain, func(o *testcluster.Options) {
		next := o.Configure
		o.Configure = func(i int, cfg *server.Config) {
			next(i, cfg)
			cfg.SchedulerInterval = 20 * time.Millisecond
		}
	})
	s, res := r.session(&griddpb.SessionAttributes{IdleTimeoutMs: 300}, 10)
	r.open(s)
	r.workers(2)
	r.waitFor("the first results", func() bool { return res.count() == 10 })
	r.waitFor("the idle session to release its workers", func() bool { return r.bound()[""] == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := r.cl.GetSession(ctx, s.ID())
	if err != nil || info.GetState() != griddpb.SessionState_SESSION_STATE_OPEN {
		t.Fatalf("session after idle release: %v %v, want it open", info, err)
	}
	r.submit(s, "again", 10)
	r.waitFor("the results of new tasks", func() bool { return res.count() == 20 })
	res.check(t, "idle session", 20)
}
