package dispatch

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Preemption says how a worker taken from a preemptible session leaves it.
type Preemption int

// Preemption modes.
const (
	// PreemptDrain: the worker is unbound after its current batches; the
	// dispatcher gives it no new ones. Nothing is lost or repeated, but the
	// higher-priority session waits for those batches to finish.
	PreemptDrain Preemption = iota
	// PreemptImmediate: the worker is unbound with abort; the tasks it held
	// are ready again at once, without counting an attempt, and run again.
	PreemptImmediate
)

func (p Preemption) String() string {
	switch p {
	case PreemptDrain:
		return "drain"
	case PreemptImmediate:
		return "immediate"
	}
	return fmt.Sprintf("Preemption(%d)", int(p))
}

// ParsePreemption reads "drain" or "immediate".
func ParsePreemption(s string) (Preemption, error) {
	switch s {
	case "drain":
		return PreemptDrain, nil
	case "immediate":
		return PreemptImmediate, nil
	}
	return 0, fmt.Errorf("preemption mode %q is not one of drain, immediate", s)
}

// SessionView is what the placement decision needs to know of a session.
type SessionView struct {
	ID          string
	Priority    int32
	Ready       int // tasks waiting for a worker
	Running     int // tasks held by workers
	MinWorkers  int32
	MaxWorkers  int32 // 0: unlimited
	Preemptible bool
	Closed      bool
	// LastActive is the last time the session had tasks ready or running
	// (or was created); with IdleTimeout it decides idle release.
	LastActive  time.Time
	IdleTimeout time.Duration // 0: never idle
	// LastServed orders sessions that tie on priority and worker count:
	// the one that got a worker longest ago goes first. The caller keeps
	// it (a counter of planning rounds is enough).
	LastServed uint64
}

// WorkerView is what the placement decision needs to know of a worker.
type WorkerView struct {
	ID       string
	Bound    string // session id, "" when idle
	Busy     bool   // holds tasks of its session
	Draining bool   // reported it is shutting down: never bound again
	// Blocked: its stream holds stopped tasks (timed out, cancelled) whose
	// handlers have not returned, and takes no new tasks until they do. It
	// does not count towards the workers a session's ready tasks can use.
	Blocked bool
}

// Action is BIND or UNBIND.
type Action int

// Actions of a Decision.
const (
	Bind Action = iota + 1
	Unbind
)

// Reason says why an UNBIND was decided, for logs and metrics.
type Reason string

// Reasons of a Decision.
const (
	ReasonNone    Reason = ""
	ReasonClosed  Reason = "closed"  // the session is closed or gone
	ReasonIdle    Reason = "idle"    // the session was idle for its idle_timeout
	ReasonMax     Reason = "max"     // the session has more than max_workers (lowered by an update)
	ReasonReclaim Reason = "reclaim" // nothing to do here, work elsewhere
	ReasonPreempt Reason = "preempt" // a higher-priority session takes it
	ReasonMin     Reason = "min"     // another session is below min_workers
	ReasonFair    Reason = "fair"    // an equal-priority session has fewer
)

// Decision tells one worker to bind to, or unbind from, a session. A worker
// that moves gets an Unbind followed by a Bind in the same plan.
type Decision struct {
	Worker  string
	Action  Action
	Session string
	Abort   bool   // with Unbind: stop the running tasks now (immediate preemption)
	Reason  Reason // with Unbind
}

// Input is everything Plan decides from.
type Input struct {
	Now        time.Time
	Sessions   []SessionView
	Workers    []WorkerView
	Preemption Preemption
}

// Plan decides which workers bind to which sessions. It is a pure function
// (no clock, no I/O, deterministic for a given input) so that the policy
// is tested by tables and the dispatcher only carries the decisions out.
//
// First it releases: a worker bound to a closed or unknown session is
// unbound, and so are the workers of a session that had nothing ready or
// running for its idle timeout (it stays open; new tasks bring workers
// back) and those beyond a max_workers lowered by an update. Then, one worker at a time, it serves the neediest session: one
// below its min_workers first, then higher priority first, then fewer
// workers first, then the one served longest ago, then by id. A session
// needs a worker while it has ready tasks, is under max_workers and has
// fewer workers than ready tasks (more would sit empty). It takes, in
// this order of cost:
//  1. an idle worker;
//  2. a worker with nothing in hand whose session has nothing ready
//     (moving it interrupts nothing);
//  3. by preemption, a worker of a preemptible session of lower priority
//     that has more than its min_workers (drain or immediate, per Input);
//  4. when below its min_workers, a worker of any session above its own
//     min_workers (drained: min_workers is a floor the owner asked for,
//     priority only orders what is above the floors);
//  5. a worker of an equal-priority session that has at least two more
//     workers than it (drained), so equal priorities converge to shares
//     that differ by at most one and none starves.
//
// A worker moves at most once per plan and a session that finds no worker
// is not asked again, so a plan ends after at most one move per worker.
// No move undoes another in a later plan while the inputs stay the same:
// each one lowers a session that ranks after the one it serves.
func Plan(in Input) []Decision {
	p := newPlanner(in)
	p.release()
	for {
		s := p.neediest()
		if s == nil {
			break
		}
		if !p.serve(s) {
			s.stuck = true
		}
	}
	return p.out
}

type planSession struct {
	SessionView
	bound   int32
	blocked int32 // bound workers that take no new tasks for now
	stuck   bool
}

type planWorker struct {
	WorkerView
	moved bool
}

type planner struct {
	in       Input
	sessions []*planSession // sorted by id
	byID     map[string]*planSession
	workers  []*planWorker // sorted by id
	// The workers bound to each session when the plan began, sorted by id;
	// a worker in a list may have been unbound or moved since.
	bySession map[string][]*planWorker
	out       []Decision
}

func newPlanner(in Input) *planner {
	p := &planner{in: in, byID: make(map[string]*planSession, len(in.Sessions))}
	for _, s := range in.Sessions {
		ps := &planSession{SessionView: s}
		p.sessions = append(p.sessions, ps)
		p.byID[s.ID] = ps
	}
	slices.SortFunc(p.sessions, func(a, b *planSession) int { return cmp.Compare(a.ID, b.ID) })
	for _, w := range in.Workers {
		p.workers = append(p.workers, &planWorker{WorkerView: w})
		if s := p.byID[w.Bound]; s != nil {
			s.bound++
			if w.Blocked {
				s.blocked++
			}
		}
	}
	slices.SortFunc(p.workers, func(a, b *planWorker) int { return cmp.Compare(a.ID, b.ID) })
	p.bySession = make(map[string][]*planWorker, len(p.sessions))
	for _, w := range p.workers {
		if w.Bound != "" {
			p.bySession[w.Bound] = append(p.bySession[w.Bound], w)
		}
	}
	return p
}

func (p *planner) idleExpired(s *planSession) bool {
	return s.IdleTimeout > 0 && s.Ready == 0 && s.Running == 0 && p.in.Now.Sub(s.LastActive) >= s.IdleTimeout
}

func (p *planner) release() {
	for _, w := range p.workers {
		if w.Bound == "" {
			continue
		}
		s := p.byID[w.Bound]
		switch {
		case s == nil || s.Closed:
			p.unbind(w, false, ReasonClosed)
		case p.idleExpired(s):
			p.unbind(w, false, ReasonIdle)
		}
	}
	// Above max_workers (lowered by an update): release the excess by
	// drain, workers with nothing in hand first.
	for _, s := range p.sessions {
		for s.MaxWorkers > 0 && s.bound > s.MaxWorkers {
			w := p.victimOf(s)
			if w == nil {
				break
			}
			p.unbind(w, false, ReasonMax)
		}
	}
}

func (p *planner) unbind(w *planWorker, abort bool, why Reason) {
	p.out = append(p.out, Decision{Worker: w.ID, Action: Unbind, Session: w.Bound, Abort: abort, Reason: why})
	if s := p.byID[w.Bound]; s != nil {
		s.bound--
	}
	w.Bound, w.Busy = "", false
}

func (p *planner) bind(w *planWorker, s *planSession) {
	p.out = append(p.out, Decision{Worker: w.ID, Action: Bind, Session: s.ID})
	w.Bound, w.moved = s.ID, true
	s.bound++
}

func (s *planSession) underMin() bool { return s.bound < s.MinWorkers }

func (s *planSession) aboveMin() bool { return s.bound > s.MinWorkers }

func (s *planSession) needs() bool {
	if s.Closed || s.stuck || s.Ready == 0 {
		return false
	}
	if s.MaxWorkers > 0 && s.bound >= s.MaxWorkers {
		return false
	}
	useful := s.bound - s.blocked
	return useful == 0 || int(useful) < s.Ready
}

// neediest is the session to serve next, or nil when none needs a worker.
func (p *planner) neediest() *planSession {
	var best *planSession
	for _, s := range p.sessions {
		if s.needs() && (best == nil || before(s, best)) {
			best = s
		}
	}
	return best
}

// before orders sessions waiting for a worker.
func before(a, b *planSession) bool {
	if am, bm := a.underMin(), b.underMin(); am != bm {
		return am
	}
	if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
		return c > 0
	}
	if c := cmp.Compare(a.bound, b.bound); c != 0 {
		return c < 0
	}
	if c := cmp.Compare(a.LastServed, b.LastServed); c != 0 {
		return c < 0
	}
	return a.ID < b.ID
}

// serve finds s a worker, cheapest source first, and reports whether it
// did.
func (p *planner) serve(s *planSession) bool {
	if w := p.find(func(w *planWorker) bool { return w.Bound == "" }); w != nil {
		p.bind(w, s)
		return true
	}
	if w := p.find(func(w *planWorker) bool {
		o := p.byID[w.Bound]
		// A session with tasks still running keeps its floor: they may
		// fail and need a worker again.
		return o != nil && o != s && o.Ready == 0 && !w.Busy && (o.Running == 0 || o.aboveMin())
	}); w != nil {
		p.unbind(w, false, ReasonReclaim)
		p.bind(w, s)
		return true
	}
	if w := p.victim(s, func(o *planSession) bool {
		return o.Preemptible && o.Priority < s.Priority && o.aboveMin()
	}); w != nil {
		p.unbind(w, p.in.Preemption == PreemptImmediate, ReasonPreempt)
		p.bind(w, s)
		return true
	}
	if s.underMin() {
		if w := p.victim(s, func(o *planSession) bool { return o.aboveMin() }); w != nil {
			p.unbind(w, false, ReasonMin)
			p.bind(w, s)
			return true
		}
	}
	if w := p.victim(s, func(o *planSession) bool {
		return o.Priority == s.Priority && o.bound >= s.bound+2 && o.aboveMin()
	}); w != nil {
		p.unbind(w, false, ReasonFair)
		p.bind(w, s)
		return true
	}
	return false
}

// find returns the first worker (by id) that may move and matches ok.
func (p *planner) find(ok func(*planWorker) bool) *planWorker {
	for _, w := range p.workers {
		if !w.moved && !w.Draining && ok(w) {
			return w
		}
	}
	return nil
}

// victim picks a worker to take from another session that eligible
// accepts: the lowest-priority such session first, then the one with the
// most workers, then by id; within it a worker with nothing in hand first.
func (p *planner) victim(s *planSession, eligible func(*planSession) bool) *planWorker {
	var from *planSession
	for _, o := range p.sessions {
		if o == s || o.Closed || !eligible(o) || !p.movable(o) {
			continue
		}
		if from == nil || o.Priority < from.Priority || o.Priority == from.Priority && o.bound > from.bound {
			from = o
		}
	}
	if from == nil {
		return nil
	}
	return p.victimOf(from)
}

// victimOf picks a worker of from that may move: one with nothing in hand
// first, then by id.
func (p *planner) victimOf(from *planSession) *planWorker {
	var busy *planWorker
	for _, w := range p.bySession[from.ID] {
		if p.stillOn(w, from) {
			if !w.Busy {
				return w
			}
			if busy == nil {
				busy = w
			}
		}
	}
	return busy
}

// movable reports whether o has a worker that may move in this plan.
func (p *planner) movable(o *planSession) bool {
	for _, w := range p.bySession[o.ID] {
		if p.stillOn(w, o) {
			return true
		}
	}
	return false
}

// stillOn reports whether w, bound to o when the plan began, still is and
// may move. Workers bound to o during the plan have moved and may not.
func (p *planner) stillOn(w *planWorker, o *planSession) bool {
	return !w.moved && !w.Draining && w.Bound == o.ID
}
