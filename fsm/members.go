package fsm

import (
	"slices"
	"strings"

	"github.com/gridd/gridd/fsm/fsmpb"
)

// setMember adds or replaces a member's addresses.
func (f *FSM) setMember(m *fsmpb.SetMember) Response {
	if m.GetId() == "" {
		return Response{Err: newError(ErrInvalid, "member id is empty")}
	}
	f.st.members[m.GetId()] = Member{ID: m.GetId(), RaftAddr: m.GetRaftAddr(), GRPCAddr: m.GetGrpcAddr()}
	return Response{}
}

// removeMember forgets a member; an unknown id is not an error, so that a
// retried removal succeeds.
func (f *FSM) removeMember(m *fsmpb.RemoveMember) Response {
	delete(f.st.members, m.GetId())
	return Response{}
}

// sortedMembers returns the members sorted by id.
func (st *state) sortedMembers() []Member {
	out := make([]Member, 0, len(st.members))
	for _, m := range st.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Members returns the known members, sorted by id.
func (f *FSM) Members() []Member {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.sortedMembers()
}
