package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gridd/gridd/fsm"
	"github.com/hashicorp/raft"
)

// Join adds the node id at raftAddr as a voter and records its addresses in
// the member table. Leader only. It is idempotent: joining a node that is
// already a voter at that address only repairs the member table; the same
// id at a new address, or another id at that address, is replaced.
func (n *Node) Join(ctx context.Context, id, raftAddr, grpcAddr string) error {
	_, err := n.JoinFresh(ctx, id, raftAddr, grpcAddr, false)
	return err
}

// JoinFresh is Join for a node that may have lost its Raft state: with
// fresh set (the node started with no state: AwaitingAdmission), a voter
// of that id and address is first removed and then added again, so that
// the votes and entries it forgot no longer count. It returns the index of
// the configuration entry that (re-)added the node, which the node must
// hold before it votes (Admit), or 0 when nothing had to change.
func (n *Node) JoinFresh(ctx context.Context, id, raftAddr, grpcAddr string, fresh bool) (uint64, error) {
	if id == "" || raftAddr == "" {
		return 0, errors.New("cluster: join: id and raft address are required")
	}
	leave, err := n.enter()
	if err != nil {
		return 0, err
	}
	defer leave()
	ctx, cancel := n.raftCtx(ctx)
	defer cancel()
	conf, index, err := n.configuration(ctx)
	if err != nil {
		return 0, err
	}
	present := false
	added := uint64(0)
	for _, s := range conf.Servers {
		sameID, sameAddr := string(s.ID) == id, string(s.Address) == raftAddr
		switch {
		case sameID && sameAddr && fresh:
			if id == n.cfg.ID {
				return 0, fmt.Errorf("cluster: join %s: the leader itself cannot rejoin with no state", id)
			}
			n.log.Warn("a voter rejoins with no Raft state (wiped data dir?): removing it before adding it back", "id", id)
			if err := n.removeServer(ctx, id); err != nil {
				return 0, err
			}
		case sameID && sameAddr:
			present = s.Suffrage == raft.Voter // AddVoter promotes a non-voter
		case sameID || sameAddr:
			if string(s.ID) == n.cfg.ID {
				return 0, fmt.Errorf("cluster: join %s at %s: conflicts with the leader %s at %s", id, raftAddr, s.ID, s.Address)
			}
			n.log.Info("join replaces a server", "old_id", s.ID, "old_addr", s.Address, "id", id, "addr", raftAddr)
			if err := n.removeServer(ctx, string(s.ID)); err != nil {
				return 0, err
			}
		}
	}
	if !present {
		timeout, err := submitTimeout(ctx)
		if err != nil {
			return 0, fmt.Errorf("cluster: join %s: %w", id, err)
		}
		fut := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, timeout)
		if err := n.await(ctx, fut); err != nil {
			return 0, writeErr("join "+id, err)
		}
		index = fut.Index()
		added = index
		n.log.Info("added voter", "id", id, "addr", raftAddr, "index", index)
	}
	want := fsm.Member{ID: id, RaftAddr: raftAddr, GRPCAddr: grpcAddr}
	if n.hasMember(want) {
		return added, nil
	}
	// The configuration index makes the key stable across retries of this
	// join, yet distinct from a later join with the same addresses.
	return added, n.setMember(ctx, want, fmt.Sprintf("cluster/join/%s/%s/%s/%d", id, raftAddr, grpcAddr, index))
}

// Remove takes the node id out of the Raft configuration and the member
// table. Leader only; removing an unknown id is not an error.
func (n *Node) Remove(ctx context.Context, id string) error {
	leave, err := n.enter()
	if err != nil {
		return err
	}
	defer leave()
	ctx, cancel := n.raftCtx(ctx)
	defer cancel()
	conf, index, err := n.configuration(ctx)
	if err != nil {
		return err
	}
	// The member entry goes first: a leader removing itself can propose
	// nothing afterwards, while a voter that lost its entry re-adds it when
	// it next takes office.
	if n.memberKnown(id) {
		if err := n.removeMember(ctx, id, fmt.Sprintf("cluster/remove/%s/%d", id, index)); err != nil {
			return err
		}
	}
	for _, s := range conf.Servers {
		if string(s.ID) == id {
			return n.removeServer(ctx, id)
		}
	}
	return nil
}

func (n *Node) removeServer(ctx context.Context, id string) error {
	timeout, err := submitTimeout(ctx)
	if err != nil {
		return fmt.Errorf("cluster: remove %s: %w", id, err)
	}
	fut := n.raft.RemoveServer(raft.ServerID(id), 0, timeout)
	if err := n.await(ctx, fut); err != nil {
		return writeErr("remove "+id, err)
	}
	n.log.Info("removed server", "id", id, "index", fut.Index())
	return nil
}

func (n *Node) memberKnown(id string) bool {
	for _, m := range n.fsm.Members() {
		if m.ID == id {
			return true
		}
	}
	return false
}

// TransferLeadership hands leadership to the voter id, or to the most
// up-to-date voter if id is empty, and returns the id of the leader that
// follows. Leader only.
func (n *Node) TransferLeadership(ctx context.Context, id string) (string, error) {
	leave, err := n.enter()
	if err != nil {
		return "", err
	}
	defer leave()
	if id == n.cfg.ID {
		return id, nil
	}
	ctx, cancel := n.raftCtx(ctx)
	defer cancel()
	var fut raft.Future
	if id == "" {
		fut = n.raft.LeadershipTransfer()
	} else {
		conf, _, err := n.configuration(ctx)
		if err != nil {
			return "", err
		}
		var addr raft.ServerAddress
		for _, s := range conf.Servers {
			if string(s.ID) == id && s.Suffrage == raft.Voter {
				addr = s.Address
			}
		}
		if addr == "" {
			return "", fmt.Errorf("cluster: transfer leadership: %q is not a voter", id)
		}
		fut = n.raft.LeadershipTransferToServer(raft.ServerID(id), addr)
	}
	if err := n.await(ctx, fut); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return "", ErrNotLeader
		}
		return "", fmt.Errorf("cluster: transfer leadership: %w", err)
	}
	return n.waitNewLeader(ctx)
}

// waitNewLeader polls until this node knows a leader other than itself.
func (n *Node) waitNewLeader(ctx context.Context) (string, error) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if id, _ := n.Leader(); id != "" && id != n.cfg.ID {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("cluster: transfer leadership: waiting for the new leader: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// configuration returns the latest Raft configuration and its index.
func (n *Node) configuration(ctx context.Context) (raft.Configuration, uint64, error) {
	fut := n.raft.GetConfiguration()
	if err := n.await(ctx, fut); err != nil {
		if errors.Is(err, raft.ErrRaftShutdown) {
			return raft.Configuration{}, 0, ErrClosed
		}
		return raft.Configuration{}, 0, fmt.Errorf("cluster: read configuration: %w", err)
	}
	return fut.Configuration(), fut.Index(), nil
}

// writeErr maps the errors of a submitted write (a command or a
// configuration change): only raft.ErrNotLeader proves it was never
// appended.
func writeErr(op string, err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return ErrNotLeader
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("cluster: %s: not submitted: %w", op, context.DeadlineExceeded)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("cluster: %s: %w: %w", op, ErrClosed, ErrUnknownOutcome)
	default:
		// ErrLeadershipLost, ErrLeadershipTransferInProgress, context expiry
		// after submission: the entry may still commit.
		return fmt.Errorf("cluster: %s: %w: %w", op, ErrUnknownOutcome, err)
	}
}

// HandOff transfers leadership away before a graceful stop, so that the
// cluster does not sit through an election timeout with a leader that no
// longer answers. It returns the new leader's id, or "" when there was
// nothing to hand off: this node does not lead, or no other voter exists
// (a single-node cluster keeps no quorum without it anyway).
func (n *Node) HandOff(ctx context.Context) (string, error) {
	if !n.IsLeader() {
		return "", nil
	}
	ctx, cancel := n.raftCtx(ctx)
	defer cancel()
	conf, _, err := n.configuration(ctx)
	if err != nil {
		return "", err
	}
	others := 0
	for _, s := range conf.Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.ID {
			others++
		}
	}
	if others == 0 {
		return "", nil
	}
	id, err := n.TransferLeadership(ctx, "")
	if errors.Is(err, ErrNotLeader) {
		return "", nil // lost leadership meanwhile: nothing left to hand off
	}
	return id, err
}
