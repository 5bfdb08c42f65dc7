// Package cluster is gridd's Raft node: the one package that knows
// hashicorp/raft. It replicates fsm commands through a Raft log kept in
// <DataDir>/raft.db, tracks leadership, and manages membership. The fsm
// package stays free of Raft; fsm_adapter.go connects the two.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gridd/gridd/fsm"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

var (
	// ErrNotLeader: this node is not the leader, and the request was not
	// submitted. It carries no leader information; ask Leader().
	ErrNotLeader = errors.New("not the leader")
	// ErrUnknownOutcome: the command was submitted but the node lost track
	// of it (leadership lost, context expired): it may or may not commit.
	// The caller retries with the same idempotency key.
	ErrUnknownOutcome = errors.New("outcome unknown")
	// ErrClosed: the node was closed or killed.
	ErrClosed = errors.New("node closed")
)

// Node is one member of the Raft cluster. All methods are safe for
// concurrent use.
type Node struct {
	cfg    Config
	log    *slog.Logger
	fsm    *fsm.FSM
	raft   *raft.Raft
	store  *raftboltdb.BoltStore
	snaps  *raft.FileSnapshotStore
	trans  *raft.NetworkTransport
	stream *streamLayer
	// gated is the transport Raft uses, which refuses votes while the node
	// awaits admission (see admission.go).
	gated     *gatedTransport
	advertise string

	notifyCh chan bool     // raft -> watchLeadership
	changes  chan bool     // LeadershipChanges; holds only the latest value
	stop     chan struct{} // closed by Close/Kill
	watchWG  sync.WaitGroup

	// pubMu orders publications on changes against epoch bumps, so that a
	// stale "true" from an earlier term can never follow a "false".
	pubMu     sync.Mutex
	epoch     uint64
	published bool

	calls     gate          // leader-only calls in flight
	restores  atomic.Uint64 // snapshots restored into the FSM since Open
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Open starts the node on cfg.DataDir, restoring the newest snapshot and
// checking raft.db first: any damage fails Open with an error naming the
// file. With cfg.Bootstrap and no existing state it bootstraps a
// single-node cluster; otherwise it waits to be joined, or rejoins with the
// state it has.
func Open(cfg Config, f *fsm.FSM) (*Node, error) {
	if f == nil {
		return nil, errors.New("cluster: nil fsm")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("cluster: create data dir: %w", err)
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "cluster", "node", cfg.ID),
		fsm:      f,
		notifyCh: make(chan bool, notifyBuffer),
		changes:  make(chan bool, 1),
		stop:     make(chan struct{}),
	}
	if err := n.start(); err != nil {
		if n.raft != nil {
			_ = n.raft.Shutdown().Error()
		}
		if n.gated != nil {
			n.gated.stopHeartbeats()
		}
		_ = n.closeResources()
		close(n.stop)
		return nil, err
	}
	n.watchWG.Add(1)
	go n.watchLeadership()
	return n, nil
}

// start opens the stores, the transport and raft; on error the caller
// closes whatever was opened.
func (n *Node) start() error {
	cfg := n.cfg
	hlog := newHCLogAdapter(cfg.Logger.With("node", cfg.ID), cfg.RaftLogLevel)
	rc, err := cfg.raftConfig(n.notifyCh, hlog)
	if err != nil {
		return err
	}
	if n.store, err = openLogStore(cfg.DataDir); err != nil {
		return err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, retainSnapshots, hlog.Named("snapshot"))
	if err != nil {
		return fmt.Errorf("cluster: snapshot store in %s: %w", cfg.DataDir, err)
	}
	n.snaps = snaps
	adapter := &fsmAdapter{f: n.fsm, restored: &n.restores, obs: cfg.observer()}
	snapIndex, err := restoreLatest(cfg.DataDir, snaps, adapter)
	if err != nil {
		return err
	}
	if err := checkLogs(n.store, snapIndex); err != nil {
		return fmt.Errorf("cluster: %s is corrupt: %w", filepath.Join(cfg.DataDir, raftDBFile), err)
	}
	if n.trans, n.stream, err = newTransport(cfg, hlog); err != nil {
		return err
	}
	n.advertise = string(n.trans.LocalAddr())
	hasState, err := raft.HasExistingState(n.store, n.store, snaps)
	if err != nil {
		return fmt.Errorf("cluster: read state in %s: %w", cfg.DataDir, err)
	}
	// The cache keeps the newest entries decoded in memory: the leader
	// reads back what it just wrote to replicate and apply it, and without
	// the cache each read is a bbolt lookup plus a msgpack decode.
	logs, err := raft.NewLogCache(logCacheSize, n.store)
	if err != nil {
		return fmt.Errorf("cluster: log cache: %w", err)
	}
	marker := filepath.Join(cfg.DataDir, admissionMarker)
	if !hasState && !cfg.Bootstrap {
		if err := writeMarker(cfg.DataDir); err != nil {
			return err
		}
	}
	_, statErr := os.Stat(marker)
	awaiting := statErr == nil
	if awaiting {
		n.log.Info("no Raft state of this node's own yet: it neither votes nor asks for votes until the leader has (re-)added it")
	}
	n.gated = newGatedTransport(n.trans, !awaiting, n.stop)
	if n.raft, err = raft.NewRaft(rc, adapter, logs, n.store, snaps, n.gated); err != nil {
		return fmt.Errorf("cluster: start raft on %s: %w", cfg.DataDir, err)
	}
	if hasState || !cfg.Bootstrap {
		n.log.Info("raft started", "addr", n.advertise, "existing_state", hasState)
		return nil
	}
	boot := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: n.trans.LocalAddr(),
	}}}
	if err := n.raft.BootstrapCluster(boot).Error(); err != nil {
		return fmt.Errorf("cluster: bootstrap: %w", err)
	}
	n.log.Info("bootstrapped a single-node cluster", "addr", n.advertise)
	return nil
}

// ID returns the node's Raft server id.
func (n *Node) ID() string { return n.cfg.ID }

// RaftAddr returns the address peers dial, resolved if RaftAddr had port 0.
func (n *Node) RaftAddr() string { return n.advertise }

// GRPCAddr returns the gRPC address this node records in the member table.
func (n *Node) GRPCAddr() string { return n.cfg.GRPCAddr }

// FSM returns the state machine this node applies to.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// IsLeader reports whether raft considers this node the leader. The leader
// may not have caught up yet: LeadershipChanges says when it has.
func (n *Node) IsLeader() bool {
	return !n.closed.Load() && n.raft.State() == raft.Leader
}

// Leader returns the current leader's id and Raft address, or empty
// strings when none is known.
func (n *Node) Leader() (id, raftAddr string) {
	addr, sid := n.raft.LeaderWithID()
	return string(sid), string(addr)
}

// LeaderGRPCAddr returns the leader's gRPC address from the replicated
// member table, or "" if the leader or its entry is unknown.
func (n *Node) LeaderGRPCAddr() string {
	id, _ := n.Leader()
	if id == "" {
		return ""
	}
	for _, m := range n.fsm.Members() {
		if m.ID == id {
			return m.GRPCAddr
		}
	}
	return ""
}

// Close stops the node gracefully: it refuses new calls, lets those in
// flight finish (at most ApplyTimeout), shuts raft down, then closes the
// transport and the store. Idempotent. It does not transfer leadership:
// call HandOff first (server.Close does).
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		select {
		case <-n.calls.close():
		case <-time.After(n.cfg.ApplyTimeout):
			n.log.Warn("closing with calls still in flight")
		}
		close(n.stop)
		var errs []error
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
		n.gated.stopHeartbeats()
		errs = append(errs, n.closeResources())
		n.watchWG.Wait()
		n.publish(n.currentEpoch(), false)
		n.closeErr = errors.Join(errs...)
		n.log.Info("closed")
	})
	return n.closeErr
}

// Kill stops the node the way kill -9 would, as far as a process can do it
// to itself: the network goes first so peers see it vanish, then raft stops
// with no leadership transfer and no final snapshot, then files close so
// that Open can reuse the data dir.
func (n *Node) Kill() error {
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		n.calls.close()
		close(n.stop)
		_ = n.trans.Close()
		_ = n.raft.Shutdown().Error()
		n.gated.stopHeartbeats()
		n.closeErr = n.closeResources()
		n.watchWG.Wait()
		n.publish(n.currentEpoch(), false)
		n.log.Info("killed")
	})
	return n.closeErr
}

func (n *Node) closeResources() error {
	var errs []error
	if n.trans != nil {
		if err := n.trans.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close transport: %w", err))
		}
	}
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", raftDBFile, err))
		}
	}
	return errors.Join(errs...)
}

// raftCtx returns ctx bounded by ApplyTimeout when it has no deadline.
func (n *Node) raftCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, n.cfg.ApplyTimeout)
}

// gate counts calls in flight and, once closed, admits no more.
type gate struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // closed when n drops to 0 after close
}

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.n == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// close refuses new calls and returns a channel closed once none is left.
func (g *gate) close() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	ch := make(chan struct{})
	if g.n == 0 {
		close(ch)
	} else {
		g.idle = ch
	}
	return ch
}
