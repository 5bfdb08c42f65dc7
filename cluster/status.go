package cluster

import "strconv"

// Status is a point-in-time view of the node, for operators and tests.
type Status struct {
	ID             string
	State          string // Follower, Candidate, Leader or Shutdown
	LeaderID       string
	LeaderRaftAddr string
	Term           uint64
	// Raft's indexes: last in the log, committed, applied to the FSM, and
	// covered by the newest snapshot.
	LastLogIndex      uint64
	CommitIndex       uint64
	AppliedIndex      uint64
	LastSnapshotIndex uint64
	// FSMLastApplied is the index of the last command the FSM applied; it
	// trails AppliedIndex when the latest entries are not commands.
	FSMLastApplied uint64
	// SnapshotRestores counts snapshots restored into the FSM since Open,
	// at startup or installed from the leader.
	SnapshotRestores uint64
	Members          []MemberStatus
}

// MemberStatus is one server of the Raft configuration, with its gRPC
// address from the member table ("" if not recorded yet).
type MemberStatus struct {
	ID       string
	RaftAddr string
	GRPCAddr string
	Suffrage string // Voter, Nonvoter or Staging
	Leader   bool
}

// Status reports the node's state. Members is empty once the node closed.
func (n *Node) Status() Status {
	leaderID, leaderAddr := n.Leader()
	st := Status{
		ID:                n.cfg.ID,
		State:             n.raft.State().String(),
		LeaderID:          leaderID,
		LeaderRaftAddr:    leaderAddr,
		Term:              n.raft.CurrentTerm(),
		LastLogIndex:      n.raft.LastIndex(),
		CommitIndex:       n.raft.CommitIndex(),
		AppliedIndex:      n.raft.AppliedIndex(),
		LastSnapshotIndex: parseStat(n.raft.Stats()["last_snapshot_index"]),
		FSMLastApplied:    n.fsm.LastApplied(),
		SnapshotRestores:  n.restores.Load(),
	}
	if n.closed.Load() {
		return st
	}
	fut := n.raft.GetConfiguration()
	if fut.Error() != nil {
		return st
	}
	grpc := make(map[string]string)
	for _, m := range n.fsm.Members() {
		grpc[m.ID] = m.GRPCAddr
	}
	for _, s := range fut.Configuration().Servers {
		st.Members = append(st.Members, MemberStatus{
			ID:       string(s.ID),
			RaftAddr: string(s.Address),
			GRPCAddr: grpc[string(s.ID)],
			Suffrage: s.Suffrage.String(),
			Leader:   string(s.ID) == leaderID,
		})
	}
	return st
}

func parseStat(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}
