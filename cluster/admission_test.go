package cluster

import (
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func tcpTransport(t *testing.T) *raft.NetworkTransport {
	t.Helper()
	tr, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 2*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// A node awaiting admission refuses vote and pre-vote requests without
// Raft seeing them, and sends none; once admitted, both pass.
func TestGatedTransportRefusesVotes(t *testing.T) {
	cand := tcpTransport(t)
	stop := make(chan struct{})
	defer close(stop)
	g := newGatedTransport(tcpTransport(t), false, stop)
	target := g.LocalAddr()

	var vote raft.RequestVoteResponse
	if err := cand.RequestVote("gated", target, &raft.RequestVoteRequest{Term: 7, LastLogIndex: 1, LastLogTerm: 1}, &vote); err != nil {
		t.Fatal(err)
	}
	if vote.Granted || vote.Term != 7 {
		t.Fatalf("gated node answered %+v, want not granted at the candidate's term", vote)
	}
	var pre raft.RequestPreVoteResponse
	if err := cand.RequestPreVote("gated", target, &raft.RequestPreVoteRequest{Term: 8}, &pre); err != nil {
		t.Fatal(err)
	}
	if pre.Granted {
		t.Fatalf("gated node granted a pre-vote: %+v", pre)
	}
	select {
	case rpc := <-g.Consumer():
		t.Fatalf("a vote request reached Raft on a gated node: %T", rpc.Command)
	default:
	}
	if err := g.RequestVote("cand", cand.LocalAddr(), &raft.RequestVoteRequest{Term: 9}, &vote); err != errNotAdmitted {
		t.Fatalf("a gated node asked for a vote: %v", err)
	}

	// Other requests pass while gated.
	go func() {
		rpc := <-g.Consumer()
		rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
	}()
	var ae raft.AppendEntriesResponse
	if err := cand.AppendEntries("gated", target, &raft.AppendEntriesRequest{Term: 7}, &ae); err != nil || !ae.Success {
		t.Fatalf("append entries through the gate: %+v %v", ae, err)
	}

	// Admitted: a vote request reaches Raft.
	g.admitted.Store(true)
	go func() {
		rpc := <-g.Consumer()
		rpc.Respond(&raft.RequestVoteResponse{Term: 10, Granted: true}, nil)
	}()
	if err := cand.RequestVote("gated", target, &raft.RequestVoteRequest{Term: 10}, &vote); err != nil || !vote.Granted {
		t.Fatalf("admitted node: %+v %v", vote, err)
	}
}

// Once a node stops heartbeats (before it closes raft.db), a heartbeat no
// longer reaches Raft: it could otherwise write a term into a closed store.
func TestStoppedHeartbeatsDoNotReachRaft(t *testing.T) {
	sender := tcpTransport(t)
	stop := make(chan struct{})
	defer close(stop)
	g := newGatedTransport(tcpTransport(t), true, stop)
	var calls atomic.Int32
	g.SetHeartbeatHandler(func(rpc raft.RPC) {
		calls.Add(1)
		rpc.Respond(&raft.AppendEntriesResponse{Term: 3, Success: true}, nil)
	})
	// A heartbeat: no entries, no commit index, from a known leader.
	hb := func() error {
		var resp raft.AppendEntriesResponse
		return sender.AppendEntries("g", g.LocalAddr(), &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ID: []byte("leader"), Addr: []byte(sender.LocalAddr())}, Term: 3,
		}, &resp)
	}
	if err := hb(); err != nil || calls.Load() != 1 {
		t.Fatalf("heartbeat before the stop: %v, %d calls", err, calls.Load())
	}
	g.stopHeartbeats()
	if err := hb(); err == nil || calls.Load() != 1 {
		t.Fatalf("heartbeat after the stop: %v, %d calls; want an error and no call", err, calls.Load())
	}
}
