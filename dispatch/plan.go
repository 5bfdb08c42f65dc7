package dispatch

import (
	"cmp"
	"slices"
)

// SessionView is what the placement decision needs to know of a session.
type SessionView struct {
	ID         string
	Priority   int32
	Ready      int   // tasks waiting for a worker
	MaxWorkers int32 // 0: unlimited
	Closed     bool
}

// WorkerView is what the placement decision needs to know of a worker.
type WorkerView struct {
	ID    string
	Bound string // session id, "" when idle
	Busy  bool   // holds tasks of its session
}

// Action is BIND or UNBIND.
type Action int

// Actions of a Decision.
const (
	Bind Action = iota + 1
	Unbind
)

// Decision tells one worker to bind to, or unbind from, a session.
type Decision struct {
	Worker  string
	Action  Action
	Session string
}

// Plan decides which workers bind to which sessions. It is a pure function,
// so that the policy can be tested by tables and replaced without touching
// the I/O around it:
//   - a worker bound to a closed or unknown session is unbound;
//   - an idle-handed worker (bound, nothing in hand, its session has nothing
//     ready) is unbound when another session has ready tasks, so it can
//     move there on the next plan;
//   - idle workers bind to sessions with ready tasks: higher priority first,
//     and among equal priorities the session with the fewest workers, so
//     sessions of one priority share the workers;
//   - max_workers is respected.
//
// The full scheduler (min workers, preemption, idle timeouts) replaces this
// function in a later version.
func Plan(sessions []SessionView, workers []WorkerView) []Decision {
	byID := make(map[string]*SessionView, len(sessions))
	bound := make(map[string]int32, len(sessions))
	anyReady := false
	for i := range sessions {
		s := &sessions[i]
		byID[s.ID] = s
		if !s.Closed && s.Ready > 0 {
			anyReady = true
		}
	}
	for _, w := range workers {
		if w.Bound != "" {
			bound[w.Bound]++
		}
	}

	var out []Decision
	var idle []string
	for _, w := range workers {
		if w.Bound == "" {
			idle = append(idle, w.ID)
			continue
		}
		s, ok := byID[w.Bound]
		switch {
		case !ok || s.Closed:
			out = append(out, Decision{Worker: w.ID, Action: Unbind, Session: w.Bound})
			bound[w.Bound]--
		case s.Ready == 0 && !w.Busy && anyReady:
			out = append(out, Decision{Worker: w.ID, Action: Unbind, Session: w.Bound})
			bound[w.Bound]--
		}
	}
	slices.Sort(idle)

	for _, wid := range idle {
		var best *SessionView
		for i := range sessions {
			s := &sessions[i]
			if s.Closed || s.Ready == 0 {
				continue
			}
			if s.MaxWorkers > 0 && bound[s.ID] >= s.MaxWorkers {
				continue
			}
			// A session never gets more workers than it has ready tasks
			// beyond its first one: the others would sit bound and empty.
			if bound[s.ID] > 0 && int(bound[s.ID]) >= s.Ready {
				continue
			}
			if best == nil || better(s, best, bound) {
				best = s
			}
		}
		if best == nil {
			break
		}
		bound[best.ID]++
		out = append(out, Decision{Worker: wid, Action: Bind, Session: best.ID})
	}
	return out
}

func better(a, b *SessionView, bound map[string]int32) bool {
	if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
		return c > 0 // higher priority first
	}
	if c := cmp.Compare(bound[a.ID], bound[b.ID]); c != 0 {
		return c < 0
	}
	return a.ID < b.ID
}
