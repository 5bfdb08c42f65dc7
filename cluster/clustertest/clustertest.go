// Package clustertest runs in-process gridd Raft clusters for tests: real
// raft, real bbolt files in t.TempDir(), real TCP on 127.0.0.1, short
// timeouts. Nodes can be killed and restarted from their data dirs. Every
// wait polls with a deadline (Timeout).
package clustertest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridd/gridd/cluster"
	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/fsm/fsmpb"
)

// Timeout bounds every wait; generous because -race on 2 cores is slow.
const Timeout = 30 * time.Second

// Test timings: fast elections, yet steady under -race on 2 cores.
const (
	HeartbeatTimeout   = 150 * time.Millisecond
	ElectionTimeout    = 150 * time.Millisecond
	LeaderLeaseTimeout = 100 * time.Millisecond
	ApplyTimeout       = 5 * time.Second
)

// Options customise a cluster. The zero value is fine.
type Options struct {
	// Configure adjusts node i's config before each start and restart.
	Configure func(i int, cfg *cluster.Config)
	// NewFSM returns node i's state machine at each start and restart (a
	// restart is a new process: it gets a fresh one). Nil: fsm.New.
	NewFSM func(i int) *fsm.FSM
	// LogLevel filters the nodes' own logs (raft's stay at Warn unless
	// Configure changes RaftLogLevel). Zero: Info.
	LogLevel slog.Level
}

// Cluster is a set of nodes; node i keeps its data dir and Raft address
// across Kill and Restart.
type Cluster struct {
	t    testing.TB
	opts Options
	log  *slog.Logger

	mu    sync.Mutex
	nodes []*cluster.Node // nil while killed or closed
	cfgs  []cluster.Config
}

// Start starts n nodes: node 0 bootstraps, the others join through the
// leader. It returns once every node has applied the joins. All nodes are
// closed when the test ends.
func Start(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t, opts: opts}
	c.log = slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: opts.LogLevel}))
	t.Cleanup(c.closeAll)
	for i := 0; i < n; i++ {
		c.AddNode()
	}
	c.WaitForLeader()
	return c
}

// AddNode starts one more node with an empty data dir, joins it through
// the leader (the first node bootstraps instead) and returns its index.
func (c *Cluster) AddNode() int {
	c.t.Helper()
	c.mu.Lock()
	i := len(c.cfgs)
	cfg := cluster.Config{
		ID:                 fmt.Sprintf("node%d", i),
		DataDir:            c.t.TempDir(),
		RaftAddr:           "127.0.0.1:0",
		GRPCAddr:           fmt.Sprintf("node%d.invalid:1337", i),
		Bootstrap:          i == 0,
		HeartbeatTimeout:   HeartbeatTimeout,
		ElectionTimeout:    ElectionTimeout,
		LeaderLeaseTimeout: LeaderLeaseTimeout,
		ApplyTimeout:       ApplyTimeout,
		Logger:             c.log,
	}
	if c.opts.Configure != nil {
		c.opts.Configure(i, &cfg)
	}
	c.cfgs = append(c.cfgs, cfg)
	c.nodes = append(c.nodes, nil)
	c.mu.Unlock()

	node := c.open(i)
	if i == 0 {
		return i
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	err := c.retry(ctx, func(l *cluster.Node) error {
		// As gridd's server does: a node with no state of its own is
		// (re-)added by the leader and votes once it holds that entry.
		fresh := node.AwaitingAdmission()
		idx, err := l.JoinFresh(ctx, node.ID(), node.RaftAddr(), node.GRPCAddr(), fresh)
		if err == nil && fresh {
			node.Admit(idx)
		}
		return err
	})
	if err != nil {
		c.t.Fatalf("clustertest: join node%d: %v", i, err)
	}
	c.WaitForApplied(c.WaitForLeader().Status().CommitIndex)
	return i
}

// open starts node i from its config and data dir; after the first start
// it binds the Raft address it had, which its peers know it by.
func (c *Cluster) open(i int) *cluster.Node {
	c.t.Helper()
	c.mu.Lock()
	cfg := c.cfgs[i]
	c.mu.Unlock()
	newFSM := c.opts.NewFSM
	if newFSM == nil {
		newFSM = func(int) *fsm.FSM { return fsm.New(fsm.Options{}) }
	}
	var node *cluster.Node
	err := poll(Timeout, func() error {
		var err error
		// The port was just released; another process may hold it briefly.
		node, err = cluster.Open(cfg, newFSM(i))
		return err
	})
	if err != nil {
		c.t.Fatalf("clustertest: open node%d: %v", i, err)
	}
	c.mu.Lock()
	c.nodes[i] = node
	c.cfgs[i].RaftAddr = node.RaftAddr()
	c.mu.Unlock()
	return node
}

// Size returns how many nodes were started, live or not.
func (c *Cluster) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes)
}

// Node returns node i, or nil while it is killed.
func (c *Cluster) Node(i int) *cluster.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// DataDir returns node i's data dir.
func (c *Cluster) DataDir(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfgs[i].DataDir
}

// Reconfigure changes node i's stored config, for its next Restart (for
// example a new RaftAddr, to model a node that moved).
func (c *Cluster) Reconfigure(i int, change func(cfg *cluster.Config)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	change(&c.cfgs[i])
}

// Live returns the indexes of the running nodes.
func (c *Cluster) Live() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var live []int
	for i, n := range c.nodes {
		if n != nil {
			live = append(live, i)
		}
	}
	return live
}

// Index returns the index of the node with the given id, or -1.
func (c *Cluster) Index(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, cfg := range c.cfgs {
		if cfg.ID == id {
			return i
		}
	}
	return -1
}

// Kill crashes node i (see cluster.Node.Kill).
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	c.stop(i, (*cluster.Node).Kill)
}

// Close stops node i gracefully.
func (c *Cluster) Close(i int) {
	c.t.Helper()
	c.stop(i, (*cluster.Node).Close)
}

func (c *Cluster) stop(i int, how func(*cluster.Node) error) {
	c.t.Helper()
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n == nil {
		c.t.Fatalf("clustertest: node%d is not running", i)
	}
	if err := how(n); err != nil {
		c.t.Errorf("clustertest: stop node%d: %v", i, err)
	}
}

// Restart starts the stopped node i again from its data dir, with a fresh
// FSM, at its old Raft address.
func (c *Cluster) Restart(i int) *cluster.Node {
	c.t.Helper()
	if c.Node(i) != nil {
		c.t.Fatalf("clustertest: node%d is running", i)
	}
	return c.open(i)
}

func (c *Cluster) closeAll() {
	for _, i := range c.Live() {
		c.Close(i)
	}
}

// WaitForLeader waits until one live node is leader and has taken office,
// and every live node names it, then returns it.
func (c *Cluster) WaitForLeader() *cluster.Node {
	c.t.Helper()
	var leader *cluster.Node
	err := poll(Timeout, func() error {
		leader = nil
		for _, i := range c.Live() {
			if n := c.Node(i); n != nil && n.Ready() {
				leader = n
			}
		}
		if leader == nil {
			return errors.New("no ready leader")
		}
		for _, i := range c.Live() {
			if n := c.Node(i); n != nil {
				if id, _ := n.Leader(); id != leader.ID() {
					return fmt.Errorf("%s sees leader %q, not %s", n.ID(), id, leader.ID())
				}
			}
		}
		return nil
	})
	if err != nil {
		c.t.Fatalf("clustertest: wait for leader: %v", err)
	}
	return leader
}

// WaitForApplied waits until every live node has applied index.
func (c *Cluster) WaitForApplied(index uint64) {
	c.t.Helper()
	err := poll(Timeout, func() error {
		for _, i := range c.Live() {
			if n := c.Node(i); n != nil {
				if got := n.Status().AppliedIndex; got < index {
					return fmt.Errorf("%s applied %d < %d", n.ID(), got, index)
				}
			}
		}
		return nil
	})
	if err != nil {
		c.t.Fatalf("clustertest: wait for applied: %v", err)
	}
}

// EnsureSame waits until every live node has applied what the leader
// committed, then fails the test unless all their FSM hashes are equal.
func (c *Cluster) EnsureSame() {
	c.t.Helper()
	c.WaitForApplied(c.WaitForLeader().Status().CommitIndex)
	var hashes []string
	err := poll(Timeout, func() error {
		hashes = hashes[:0]
		distinct := map[string]bool{}
		for _, i := range c.Live() {
			if n := c.Node(i); n != nil {
				h := n.FSM().Hash()
				distinct[h] = true
				hashes = append(hashes, n.ID()+"="+h)
			}
		}
		if len(distinct) > 1 {
			return errors.New("hashes differ")
		}
		return nil
	})
	if err != nil {
		c.t.Fatalf("clustertest: replicas differ: %v", hashes)
	}
}

// Propose proposes cmd on the current leader, retrying through elections
// (ErrNotLeader, ErrUnknownOutcome) until ctx ends. Safe to call from any
// goroutine; cmd must carry an idempotency key if a retry could repeat it.
func (c *Cluster) Propose(ctx context.Context, cmd *fsmpb.Command) (fsm.Response, error) {
	var resp fsm.Response
	err := c.retry(ctx, func(l *cluster.Node) error {
		var err error
		resp, err = l.Propose(ctx, cmd)
		return err
	})
	return resp, err
}

// retry runs op on whichever live node is leader until it succeeds, fails
// with an error that is not about leadership, or ctx ends.
func (c *Cluster) retry(ctx context.Context, op func(leader *cluster.Node) error) error {
	for {
		err := cluster.ErrNotLeader
		for _, i := range c.Live() {
			if n := c.Node(i); n != nil && n.IsLeader() {
				err = op(n)
				break
			}
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, cluster.ErrNotLeader) && !errors.Is(err, cluster.ErrUnknownOutcome) && !errors.Is(err, cluster.ErrClosed) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// poll calls cond every few milliseconds until it returns nil or timeout
// passes, and then returns its last error.
func poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		<-tick.C
	}
}

// testWriter sends log lines to t.Log until the test's cleanup starts:
// t.Log after the test has finished panics, and raft's goroutines may
// still log while the nodes close.
type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func newTestWriter(t testing.TB) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
