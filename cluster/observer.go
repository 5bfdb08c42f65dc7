package cluster

import "time"

// Observer hears of what the node does, for metrics, without the cluster
// package depending on a metrics library.
type Observer interface {
	// ObserveApply reports how long a successful Propose took, from
	// submission until the FSM applied the command on this node.
	ObserveApply(d time.Duration)
	// ObserveSnapshot reports a snapshot written to disk: how long
	// persisting took and how many bytes it holds.
	ObserveSnapshot(d time.Duration, bytes int64)
	// LeadershipChanged reports that this node became leader (true) or
	// stopped being leader (false), as Raft notified it.
	LeadershipChanged(leader bool)
}

type nopObserver struct{}

func (nopObserver) ObserveApply(time.Duration)           {}
func (nopObserver) ObserveSnapshot(time.Duration, int64) {}
func (nopObserver) LeadershipChanged(bool)               {}

func (c Config) observer() Observer {
	if c.Observer == nil {
		return nopObserver{}
	}
	return c.Observer
}
