package conn

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/rpc/griddpb"
)

type probeAnswer struct {
	addr string
	st   *griddpb.ClusterStatus
	err  error
}

// Discover asks every known address for Cluster.Status (in parallel) and
// settles on the leader: a node that says it is the leader wins; otherwise
// the leader hint of a follower is probed. When the hinted leader cannot be
// reached from here (its advertised address is not routable for this
// client) but a follower can, the follower is used, since followers forward
// to the leader. The answers' member lists extend the known addresses, so a
// client given one seed survives that seed's death.
//
// It fails with codes.Unavailable when no leader is known, for example
// during an election: callers back off and try again.
func (p *Pool) Discover(ctx context.Context) (string, error) {
	t, err := p.discover(ctx)
	return t.Addr, err
}

func (p *Pool) discover(ctx context.Context) (Target, error) {
	p.discoverMu.Lock()
	defer p.discoverMu.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return Target{}, ErrClosed
	}
	if p.leader != "" {
		// Found by the goroutine that held discoverMu before us.
		t := p.target
		p.mu.Unlock()
		return t, nil
	}
	addrs := append([]string(nil), p.known...)
	p.mu.Unlock()

	answers := p.probeAll(ctx, addrs)
	var errs []error
	var best *probeAnswer
	for i, a := range answers {
		if a.err != nil {
			errs = append(errs, a.err)
			continue
		}
		p.learnMembers(a.st)
		// A leader cut off from the others may still call itself leader
		// for a moment: the one of the latest term is the real one.
		if a.st.GetState() == "leader" && (best == nil || a.st.GetTerm() > best.st.GetTerm()) {
			best = &answers[i]
		}
	}
	if best != nil {
		return p.setLeader(best.addr, best.st.GetNodeId(), best.st.GetTerm()), nil
	}
	if t, ok := p.followHints(ctx, addrs, answers); ok {
		return t, nil
	}
	var err error
	switch {
	case len(errs) < len(answers):
		// Nodes answer but none leads: an election is under way.
		err = fmt.Errorf("%w: %w", ErrNoLeader,
			status.Errorf(codes.Unavailable, "gridd: no leader among %v yet (election under way?)", addrs))
	case len(errs) > 0:
		err = status.Errorf(codes.Unavailable, "gridd: no node answered among %v: %v", addrs, errors.Join(errs...))
	default:
		err = status.Errorf(codes.Unavailable, "gridd: no address to ask")
	}
	p.log.Debug("leader discovery failed", "addrs", addrs, "err", err)
	return Target{}, err
}

// followHints probes the leaders named by followers that were not among the
// probed addresses.
func (p *Pool) followHints(ctx context.Context, probed []string, answers []probeAnswer) (Target, bool) {
	tried := make(map[string]bool, len(probed))
	for _, a := range probed {
		tried[a] = true
	}
	unreachable := make(map[string]bool)
	for _, a := range answers {
		hint := a.st.GetLeaderGrpcAddr()
		if a.err != nil || hint == "" || tried[hint] {
			continue
		}
		tried[hint] = true
		st, err := p.Probe(ctx, hint)
		if err != nil {
			unreachable[hint] = true
			continue
		}
		if st.GetState() == "leader" {
			p.mu.Lock()
			p.learnLocked(hint)
			p.mu.Unlock()
			return p.setLeader(hint, st.GetNodeId(), st.GetTerm()), true
		}
	}
	for _, a := range answers {
		if a.err == nil && unreachable[a.st.GetLeaderGrpcAddr()] {
			p.log.Info("leader not reachable directly; going through a follower",
				"leader", a.st.GetLeaderGrpcAddr(), "via", a.addr)
			return p.setLeader(a.addr, a.st.GetLeaderId(), a.st.GetTerm()), true
		}
	}
	return Target{}, false
}

func (p *Pool) probeAll(ctx context.Context, addrs []string) []probeAnswer {
	answers := make([]probeAnswer, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Go(func() {
			st, err := p.Probe(ctx, addr)
			answers[i] = probeAnswer{addr: addr, st: st, err: err}
		})
	}
	wg.Wait()
	return answers
}

func (p *Pool) learnMembers(st *griddpb.ClusterStatus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range st.GetMembers() {
		p.learnLocked(m.GetGrpcAddr())
	}
}

func (p *Pool) setLeader(addr, leaderID string, term uint64) Target {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leader != addr {
		p.log.Debug("leader found", "addr", addr, "leader", leaderID, "term", term)
	}
	p.leader = addr
	p.target = Target{Addr: addr, LeaderID: leaderID, Term: term}
	return p.target
}
