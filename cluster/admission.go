package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// A node that starts with no Raft state and joins a cluster may be a node
// whose data dir was wiped (a damaged disk replaced, raft.db restored from
// nothing) while the cluster still counts it as a voter. It has forgotten
// the entries it acknowledged and the votes it cast, so until the cluster
// has taken it out and added it back, its vote could elect a leader that
// lacks a committed entry: with entry E on {n1, n3}, n3 wiped and n1 down,
// n3's vote would make n2 leader without E.
//
// So such a node starts "awaiting admission": it grants no vote and asks
// for none (so it cannot elect itself either), until the leader has
// removed and re-added it (JoinRequest.fresh) and the node's log holds
// the configuration entry that re-added it. From then on the usual Raft
// argument applies: everything committed before is on a majority of the
// configuration without it. The state lives in a marker file, so a node
// that restarts before it was admitted stays gated.
const admissionMarker = "awaiting-admission"

// errNotAdmitted is what a gated node's outgoing vote requests fail with.
var errNotAdmitted = errors.New("cluster: this node has not been admitted yet (it started with no Raft state); it asks for no vote")

// gatedTransport is the Raft transport of a node awaiting admission: vote
// and pre-vote requests it receives are refused without reaching Raft,
// and those it would send fail. Everything else passes.
type gatedTransport struct {
	*raft.NetworkTransport
	admitted atomic.Bool
	out      chan raft.RPC
	stop     chan struct{}

	// Heartbeats take a fast path: the transport's connection goroutines
	// call Raft directly, and Raft's Shutdown does not wait for them. One
	// arriving during a stop could write a new term into raft.db after it
	// was closed ("failed to save current term: database not open"), so the
	// node stops heartbeats itself, waiting for any in flight, before it
	// closes its files.
	hbMu      sync.RWMutex
	hbStopped bool
}

// errHeartbeatsStopped answers a heartbeat that arrives while the node stops.
var errHeartbeatsStopped = errors.New("cluster: node stopping")

// SetHeartbeatHandler wraps Raft's handler so that stopHeartbeats can wait
// for those in flight.
func (g *gatedTransport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	if cb == nil {
		g.NetworkTransport.SetHeartbeatHandler(nil)
		return
	}
	g.NetworkTransport.SetHeartbeatHandler(func(rpc raft.RPC) {
		g.hbMu.RLock()
		defer g.hbMu.RUnlock()
		if g.hbStopped {
			rpc.Respond(nil, errHeartbeatsStopped)
			return
		}
		cb(rpc)
	})
}

// stopHeartbeats waits for heartbeats in flight and refuses later ones.
func (g *gatedTransport) stopHeartbeats() {
	g.hbMu.Lock()
	g.hbStopped = true
	g.hbMu.Unlock()
}

func newGatedTransport(t *raft.NetworkTransport, admitted bool, stop chan struct{}) *gatedTransport {
	g := &gatedTransport{NetworkTransport: t, out: make(chan raft.RPC), stop: stop}
	g.admitted.Store(admitted)
	go g.filter()
	return g
}

// Consumer is where Raft reads incoming requests from.
func (g *gatedTransport) Consumer() <-chan raft.RPC { return g.out }

func (g *gatedTransport) filter() {
	in := g.NetworkTransport.Consumer()
	for {
		select {
		case rpc := <-in:
			if !g.admitted.Load() && g.refuse(rpc) {
				continue
			}
			select {
			case g.out <- rpc:
			case <-g.stop:
				return
			}
		case <-g.stop:
			return
		}
	}
}

// refuse answers a vote or pre-vote request with "not granted" and
// reports whether it did. The answer carries the candidate's own term, so
// it neither deposes nor encourages anyone.
func (g *gatedTransport) refuse(rpc raft.RPC) bool {
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, Addr: []byte(g.LocalAddr())}
	switch req := rpc.Command.(type) {
	case *raft.RequestVoteRequest:
		rpc.Respond(&raft.RequestVoteResponse{RPCHeader: hdr, Term: req.Term, Granted: false}, nil)
		return true
	case *raft.RequestPreVoteRequest:
		rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: hdr, Term: req.Term, Granted: false}, nil)
		return true
	}
	return false
}

// RequestVote fails while the node awaits admission.
func (g *gatedTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if !g.admitted.Load() {
		return errNotAdmitted
	}
	return g.NetworkTransport.RequestVote(id, target, args, resp)
}

// RequestPreVote fails while the node awaits admission.
func (g *gatedTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if !g.admitted.Load() {
		return errNotAdmitted
	}
	return g.NetworkTransport.RequestPreVote(id, target, args, resp)
}

// writeMarker records durably that the node awaits admission.
func writeMarker(dir string) error {
	p := filepath.Join(dir, admissionMarker)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	_, werr := f.WriteString("this node started with no Raft state and waits to be re-added by the cluster's leader\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("cluster: write %s: %w", p, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("cluster: sync %s: %w", dir, err)
	}
	return nil
}

// AwaitingAdmission reports whether this node started with no Raft state
// and has not been admitted yet: its join must ask the leader to re-add it
// (JoinRequest.fresh).
func (n *Node) AwaitingAdmission() bool {
	return n.gated != nil && !n.gated.admitted.Load()
}

// Admit opens the gate once the node's log holds the entry at index (the
// configuration entry that re-added it, from the leader's Join answer).
// It returns at once; the wait runs until then or until the node closes.
func (n *Node) Admit(index uint64) {
	if !n.AwaitingAdmission() {
		return
	}
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for n.raft.LastIndex() < index {
			select {
			case <-n.stop:
				return
			case <-t.C:
			}
		}
		if err := os.Remove(filepath.Join(n.cfg.DataDir, admissionMarker)); err != nil && !errors.Is(err, os.ErrNotExist) {
			// Staying gated is safe; a restart will ask to be re-added again.
			n.log.Error("admitted, but the marker could not be removed", "err", err)
			return
		}
		if err := syncDir(n.cfg.DataDir); err != nil {
			n.log.Error("admitted, but the data dir could not be synced", "err", err)
			return
		}
		n.gated.admitted.Store(true)
		n.log.Info("admitted: this node votes again", "index", index)
	}()
}
