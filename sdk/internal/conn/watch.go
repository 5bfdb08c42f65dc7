package conn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultWatchSilence is how long a stream with work outstanding may hear
// nothing from its node before the SDK asks the other nodes whether a new
// leader was elected. It is above a normal election on the default Raft
// timing (about 1-2 s), so a probe usually finds the successor at once.
const DefaultWatchSilence = 2 * time.Second

// ErrSuperseded is wrapped (with codes.Unavailable) by the error a Watch
// abandons a stream with: the stream's node went silent and another node
// names a leader elected in a later term.
var ErrSuperseded = errors.New("a newer leader was elected")

// nodeState is what the watches of one node's streams share.
type nodeState struct {
	// heard is when a message last arrived from the node, on any stream of
	// this pool (unix ns): one busy stream is enough to show the node is
	// alive.
	heard atomic.Int64

	// One probe at a time per node; watches of several streams of the same
	// node that fall silent together share its verdict.
	probeMu  sync.Mutex
	probedAt time.Time
	probed   Target
	verdict  Target // the superseding leader found; zero if none
}

func (p *Pool) node(addr string) *nodeState {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.nodes[addr]
	if !ok {
		n = &nodeState{}
		p.nodes[addr] = n
	}
	return n
}

// Watch guards one stream against a node that stops answering without
// closing its connections: a paused process (SIGSTOP, docker pause) or a
// host that froze. TCP stays up and gRPC keepalive needs tens of seconds to
// give up, while the rest of the cluster elects a new leader within
// seconds. When the stream has work outstanding and its node has been
// silent for the watch's silence, the Watch asks the other known nodes for
// their status; if one names a leader elected in a later term than the
// stream's, the Watch abandons the stream, and the caller reconnects to
// the new leader (resending what was not acknowledged, as after any broken
// stream). A node that is merely slow is left alone: no other node names a
// newer leader.
type Watch struct {
	p       *Pool
	t       Target
	n       *nodeState
	silence time.Duration
	busy    func() bool
	abandon func(error)
}

// Watch returns a watch of a stream opened to t. busy reports whether the
// stream has work outstanding (a silent idle stream is normal); abandon
// ends the stream with the given error. A silence of 0 means
// DefaultWatchSilence. Call Heard on every message received, and Run.
func (p *Pool) Watch(t Target, silence time.Duration, busy func() bool, abandon func(error)) *Watch {
	if silence <= 0 {
		silence = DefaultWatchSilence
	}
	w := &Watch{p: p, t: t, n: p.node(t.Addr), silence: silence, busy: busy, abandon: abandon}
	// The stream was just opened: the node answered.
	w.Heard()
	return w
}

// Heard records a message from the stream's node.
func (w *Watch) Heard() { w.n.heard.Store(time.Now().UnixNano()) }

// Run watches until ctx ends or the stream is abandoned.
func (w *Watch) Run(ctx context.Context) {
	tick := max(w.silence/4, 10*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	var busySince time.Time // zero while the stream is idle
	var nextProbe time.Time
	wait := tick // between probes while the node stays silent
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if !w.busy() {
			busySince = time.Time{}
			continue
		}
		if busySince.IsZero() {
			busySince = now
		}
		last := time.Unix(0, w.n.heard.Load())
		if last.Before(busySince) {
			last = busySince
		}
		if silent := now.Sub(last); silent < w.silence {
			wait, nextProbe = tick, time.Time{}
			continue
		}
		if now.Before(nextProbe) {
			continue
		}
		if nt, ok := w.p.superseded(ctx, w.t, tick); ok {
			err := fmt.Errorf("%w: %w", ErrSuperseded, status.Errorf(codes.Unavailable,
				"gridd: %s silent for %v with work outstanding; %s leads in term %d (was %s in term %d)",
				w.t.Addr, now.Sub(last).Round(time.Millisecond), nt.LeaderID, nt.Term, w.t.LeaderID, w.t.Term))
			w.p.log.Warn("abandoning a stream to a silent node", "addr", w.t.Addr, "err", err)
			w.abandon(err)
			return
		}
		// Still no successor (an election takes a moment, or the node is
		// only slow): ask again, less and less often.
		nextProbe = now.Add(wait)
		wait = min(2*wait, 4*w.silence)
	}
}

// superseded asks every known node but t.Addr for its status and reports
// a leader elected in a later term than t's, if one is named. A verdict
// younger than fresh is reused. When the successor answered itself, it
// becomes the pool's leader, so reconnecting skips discovery (which would
// wait for the silent node's probe to time out); otherwise the pool
// forgets t.Addr and the next caller rediscovers.
func (p *Pool) superseded(ctx context.Context, t Target, fresh time.Duration) (Target, bool) {
	n := p.node(t.Addr)
	n.probeMu.Lock()
	defer n.probeMu.Unlock()
	if n.probed == t && time.Since(n.probedAt) < fresh {
		return n.verdict, n.verdict.Addr != ""
	}
	addrs := slices.DeleteFunc(p.Known(), func(a string) bool { return a == t.Addr })
	var found Target
	direct := false
	for _, a := range p.probeAll(ctx, addrs) {
		if a.err != nil {
			continue
		}
		p.learnMembers(a.st)
		leader := a.st.GetLeaderId()
		if a.st.GetTerm() <= t.Term || leader == "" || leader == t.LeaderID {
			continue
		}
		isLeader := a.st.GetState() == "leader"
		if a.st.GetTerm() > found.Term || isLeader && !direct && a.st.GetTerm() == found.Term {
			found = Target{Addr: a.addr, LeaderID: leader, Term: a.st.GetTerm()}
			direct = isLeader
		}
	}
	n.probed, n.probedAt, n.verdict = t, time.Now(), found
	if found.Addr == "" {
		return Target{}, false
	}
	p.mu.Lock()
	if p.leader == t.Addr || p.leader == "" {
		if direct {
			p.leader, p.target = found.Addr, found
		} else {
			p.leader, p.target = "", Target{}
		}
	}
	p.mu.Unlock()
	return found, true
}
