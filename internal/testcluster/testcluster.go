// Package testcluster starts real gridd nodes in one process for tests:
// real Raft over TCP on loopback, real bbolt files in t.TempDir(), real
// gRPC. Nodes can be killed (no graceful step) and restarted from their
// data dirs on the same addresses.
package testcluster

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridd/gridd/server"
)

// Node is one member of a test cluster.
type Node struct {
	Cfg  server.Config
	Srv  *server.Server // nil while killed
	gate *gate          // see Freeze
}

// Cluster is a set of nodes started by Start.
type Cluster struct {
	t     testing.TB
	Nodes []*Node
}

// Options tune a test cluster.
type Options struct {
	// Configure, if set, edits each node's configuration before start.
	Configure func(i int, cfg *server.Config)
}

// freeAddr reserves a loopback port; the node binds it right after, and
// binds it again on restart so that its Raft address stays the same.
//
// Ports come from below the kernel's ephemeral range (32768-60999 on
// Linux): a node restarted on its old address must find it free, and an
// ephemeral port can be taken meanwhile by any outgoing connection of the
// test binaries running in parallel (seen in CI as "address already in
// use" on a restart).
func freeAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("reserve a port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Start starts n nodes: the first bootstraps, the others join it. It
// returns once every node is a member and a leader serves. The cluster is
// killed at the end of the test.
func Start(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	base := t.TempDir()
	// Registered first so it runs last: once the test is over, late log
	// lines from stopping goroutines are dropped instead of panicking.
	done := &atomic.Bool{}
	t.Cleanup(func() { done.Store(true) })
	var seed string
	for i := 0; i < n; i++ {
		cfg := server.Config{
			ID:                 fmt.Sprintf("n%d", i+1),
			DataDir:            filepath.Join(base, fmt.Sprintf("n%d", i+1)),
			GRPCAddr:           freeAddr(t),
			RaftAddr:           freeAddr(t),
			HeartbeatTimeout:   300 * time.Millisecond,
			ElectionTimeout:    300 * time.Millisecond,
			LeaderLeaseTimeout: 150 * time.Millisecond,
			Logger:             slog.New(slog.NewTextHandler(testWriter{t, done}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		}
		if i > 0 {
			cfg.Join = []string{seed}
		}
		if opts.Configure != nil {
			opts.Configure(i, &cfg)
		}
		g := &gate{}
		cfg.GRPCServerOptions = append(cfg.GRPCServerOptions, g.options()...)
		node := &Node{Cfg: cfg, gate: g}
		c.Nodes = append(c.Nodes, node)
		c.start(i)
		if i == 0 {
			seed = node.Srv.GRPCAddr()
			c.WaitLeader()
		}
	}
	t.Cleanup(c.KillAll)
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			n.gate.thaw()
		}
	})
	c.WaitMembers(n)
	return c
}

func (c *Cluster) start(i int) {
	c.t.Helper()
	srv, err := server.Start(context.Background(), c.Nodes[i].Cfg)
	if err != nil {
		c.t.Fatalf("start node %d: %v", i+1, err)
	}
	c.Nodes[i].Srv = srv
}

// Addrs returns the gRPC addresses of every node, killed ones included
// (clients must cope with dead addresses).
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Cfg.GRPCAddr
	}
	return out
}

// WaitFor polls cond until it holds or the deadline passes.
func (c *Cluster) WaitFor(what string, timeout time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Leader returns the index of the live node that leads, or -1.
func (c *Cluster) Leader() int {
	for i, n := range c.Nodes {
		if n.Srv != nil && n.Srv.Node().IsLeader() {
			return i
		}
	}
	return -1
}

// WaitLeader waits until a live node leads and returns its index.
func (c *Cluster) WaitLeader() int {
	c.t.Helper()
	c.WaitFor("a leader", 20*time.Second, func() bool { return c.Leader() >= 0 })
	return c.Leader()
}

// WaitMembers waits until the leader's configuration has n servers and
// each of them has a gRPC address recorded.
func (c *Cluster) WaitMembers(n int) {
	c.t.Helper()
	c.WaitFor(fmt.Sprintf("%d members", n), 30*time.Second, func() bool {
		l := c.Leader()
		if l < 0 {
			return false
		}
		st := c.Nodes[l].Srv.Node().Status()
		if len(st.Members) != n {
			return false
		}
		for _, m := range st.Members {
			if m.GRPCAddr == "" {
				return false
			}
		}
		return true
	})
}

// Kill crashes node i: no graceful step.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	if c.Nodes[i].Srv == nil {
		return
	}
	if err := c.Nodes[i].Srv.Kill(); err != nil {
		c.t.Logf("kill node %d: %v", i+1, err)
	}
	c.Nodes[i].Srv = nil
}

// KillAll crashes every live node.
func (c *Cluster) KillAll() {
	for i := range c.Nodes {
		c.Kill(i)
	}
}

// Stop closes node i gracefully, as SIGTERM does: a leader hands
// leadership over first. Restart brings it back.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	if c.Nodes[i].Srv == nil {
		return
	}
	if err := c.Nodes[i].Srv.Close(); err != nil {
		c.t.Errorf("close node %d: %v", i+1, err)
	}
	c.Nodes[i].Srv = nil
}

// Restart starts node i again from its data dir, on the same addresses;
// a running node is killed first.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Kill(i)
	c.start(i)
}

// WaitConverged waits until every live node has applied the same index and
// holds the same state hash.
func (c *Cluster) WaitConverged() {
	c.t.Helper()
	c.WaitFor("replicas to converge", 30*time.Second, func() bool {
		var hash string
		var applied uint64
		first := true
		for _, n := range c.Nodes {
			if n.Srv == nil {
				continue
			}
			f := n.Srv.Node().FSM()
			h, a := f.Hash(), f.LastApplied()
			if first {
				hash, applied, first = h, a, false
				continue
			}
			if h != hash || a != applied {
				return false
			}
		}
		return true
	})
}

// testWriter sends logs to t.Log, so they show only for failing tests.
type testWriter struct {
	t    testing.TB
	done *atomic.Bool
}

func (w testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(string(p))
	}
	return len(p), nil
}

// Partition cuts node i's Raft traffic from every other node, on both
// sides; client traffic (gRPC) still flows, as with a partition that a
// load balancer sees around. Heal undoes it.
func (c *Cluster) Partition(i int) {
	c.t.Helper()
	var others []string
	for j, n := range c.Nodes {
		if j == i || n.Srv == nil {
			continue
		}
		others = append(others, n.Srv.Node().RaftAddr())
		n.Srv.Node().Partition([]string{c.Nodes[i].Srv.Node().RaftAddr()})
	}
	c.Nodes[i].Srv.Node().Partition(others)
}

// Heal removes every partition between live nodes.
func (c *Cluster) Heal() {
	for _, n := range c.Nodes {
		if n.Srv != nil {
			n.Srv.Node().Partition(nil)
		}
	}
}
