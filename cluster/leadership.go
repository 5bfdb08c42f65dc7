package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/fsm/fsmpb"
)

// LeadershipChanges reports leadership as this node's leader-only work
// should see it: true once the node is leader, its FSM holds every
// committed entry and the member table has its addresses; false as soon as
// raft reports the loss (and when the node closes). The channel holds one
// value and a newer value replaces an unread one, so the latest is never
// lost and raft is never blocked. Each true starts a new term of office: a
// reader that sees true twice in a row lost leadership in between and must
// rebuild its leader state.
func (n *Node) LeadershipChanges() <-chan bool { return n.changes }

// Ready reports whether this node is the leader and has taken office: the
// last value published on LeadershipChanges was true. Unlike reading the
// channel, it consumes nothing.
func (n *Node) Ready() bool {
	n.pubMu.Lock()
	defer n.pubMu.Unlock()
	return n.published && !n.closed.Load()
}

// watchLeadership drains raft's notify channel. Taking office (Barrier,
// member table) runs in its own goroutine so that this loop always keeps
// up with raft, which blocks on a full notify channel.
func (n *Node) watchLeadership() {
	defer n.watchWG.Done()
	cancel := context.CancelFunc(func() {})
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	for {
		select {
		case <-n.stop:
			return
		case leader := <-n.notifyCh:
			n.cfg.observer().LeadershipChanged(leader)
			cancel()
			epoch := n.bumpEpoch()
			if !leader {
				n.publish(epoch, false)
				n.log.Info("lost leadership")
				continue
			}
			ctx, stop := context.WithCancel(context.Background())
			cancel = stop
			wg.Add(1)
			go func() {
				defer wg.Done()
				n.takeOffice(ctx, epoch)
			}()
		}
	}
}

func (n *Node) bumpEpoch() uint64 {
	n.pubMu.Lock()
	defer n.pubMu.Unlock()
	n.epoch++
	return n.epoch
}

func (n *Node) currentEpoch() uint64 {
	n.pubMu.Lock()
	defer n.pubMu.Unlock()
	return n.epoch
}

// publish replaces any unread value on changes with leader, unless a newer
// leadership event superseded epoch. Repeated falses are dropped.
func (n *Node) publish(epoch uint64, leader bool) bool {
	n.pubMu.Lock()
	defer n.pubMu.Unlock()
	if epoch != n.epoch || (!leader && !n.published) {
		return false
	}
	select {
	case <-n.changes:
	default:
	}
	n.changes <- leader
	n.published = leader
	return true
}

// takeOffice makes the new leader's FSM current and its member entry right
// before announcing it, retrying until it succeeds or leadership ends.
func (n *Node) takeOffice(ctx context.Context, epoch uint64) {
	backoff := 10 * time.Millisecond
	for {
		err := n.Barrier(ctx)
		if err == nil {
			err = n.ensureSelfMember(ctx)
		}
		if err == nil {
			if n.publish(epoch, true) {
				n.log.Info("leader ready", "term", n.raft.CurrentTerm(), "applied", n.raft.AppliedIndex())
			}
			return
		}
		if ctx.Err() != nil || errors.Is(err, ErrNotLeader) || errors.Is(err, ErrClosed) {
			return
		}
		n.log.Warn("taking office failed, retrying", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
	}
}

// ensureSelfMember records this node's addresses in the member table if
// they are missing or stale. The request id includes the term, so a retry
// within the term is deduplicated while a later change back to the same
// addresses is not mistaken for a repeat.
func (n *Node) ensureSelfMember(ctx context.Context) error {
	want := fsm.Member{ID: n.cfg.ID, RaftAddr: n.advertise, GRPCAddr: n.cfg.GRPCAddr}
	if n.hasMember(want) {
		return nil
	}
	reqID := fmt.Sprintf("cluster/self/%s/%s/%s/term-%d", want.ID, want.RaftAddr, want.GRPCAddr, n.raft.CurrentTerm())
	return n.setMember(ctx, want, reqID)
}

func (n *Node) hasMember(want fsm.Member) bool {
	for _, m := range n.fsm.Members() {
		if m.ID == want.ID {
			return m == want
		}
	}
	return false
}

func (n *Node) setMember(ctx context.Context, m fsm.Member, reqID string) error {
	resp, err := n.Propose(ctx, &fsmpb.Command{
		NowUnixMs: time.Now().UnixMilli(),
		RequestId: reqID,
		Cmd: &fsmpb.Command_SetMember{SetMember: &fsmpb.SetMember{
			Id: m.ID, RaftAddr: m.RaftAddr, GrpcAddr: m.GRPCAddr,
		}},
	})
	if err != nil {
		return fmt.Errorf("set member %s: %w", m.ID, err)
	}
	if resp.Err != nil {
		return fmt.Errorf("set member %s: %w", m.ID, resp.Err)
	}
	return nil
}

func (n *Node) removeMember(ctx context.Context, id, reqID string) error {
	resp, err := n.Propose(ctx, &fsmpb.Command{
		NowUnixMs: time.Now().UnixMilli(),
		RequestId: reqID,
		Cmd:       &fsmpb.Command_RemoveMember{RemoveMember: &fsmpb.RemoveMember{Id: id}},
	})
	if err != nil {
		return fmt.Errorf("remove member %s: %w", id, err)
	}
	if resp.Err != nil {
		return fmt.Errorf("remove member %s: %w", id, resp.Err)
	}
	return nil
}
