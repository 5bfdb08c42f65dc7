package cluster

import "github.com/gridd/gridd/fsm"

// setLastApplied tells the FSM which index a restored snapshot covers.
//
// TODO(fsm): (*fsm.FSM).SetLastApplied(uint64) is being added by the fsm
// engineer; once it is in fsm.go, call it directly from fsmAdapter.Restore
// and delete this file. Until then a restored FSM keeps the LastApplied its
// Restore set.
func setLastApplied(f *fsm.FSM, index uint64) {
	if s, ok := any(f).(interface{ SetLastApplied(uint64) }); ok {
		s.SetLastApplied(index)
	}
}
