package dispatch

import (
	"sort"
	"time"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/rpc/griddpb"
)

// plan gathers the views, decides with Plan, and carries the decisions out.
// It runs on every event (poke) and on the PlanInterval tick, which is what
// notices idle timeouts.
func (d *Dispatcher) plan() {
	d.mu.Lock()
	ids := make([]string, 0, len(d.sessions))
	for id := range d.sessions {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	sort.Strings(ids)
	// Read outside mu: the lock order is the FSM's lock, then mu.
	infos := make(map[string]fsm.SessionInfo, len(ids))
	for _, id := range ids {
		if info, ok := d.fsm.Session(id); ok {
			infos[id] = info
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.active {
		return
	}
	now := time.Now()
	d.round++
	views := make([]SessionView, 0, len(d.sessions))
	for _, id := range ids {
		s := d.sessions[id]
		if s == nil {
			continue
		}
		info, ok := infos[id]
		if ok {
			applyAttrs(s, info)
		}
		if ok && !info.Closed && s.queued == 0 && s.delayed == 0 && s.running == 0 && len(s.streams) == 0 && !d.hasWorkersLocked(id) {
			delete(d.sessions, id) // nothing to do; recreated by the next event
			continue
		}
		// Tasks waiting for their retry backoff keep the session active, or
		// a backoff longer than idle_timeout would release its workers.
		if s.queued > 0 || s.running > 0 || s.delayed > 0 {
			s.lastActive = now
		}
		views = append(views, SessionView{ID: id, Priority: s.priority, Ready: s.queued, Running: s.running,
			MinWorkers: s.minWorkers, MaxWorkers: s.maxWorkers, Preemptible: s.preemptible,
			Closed: !ok || info.Closed, LastActive: s.lastActive, IdleTimeout: s.idleTimeout,
			LastServed: s.lastServed})
	}
	viewed := make(map[string]bool, len(views))
	for _, v := range views {
		viewed[v.ID] = true
	}
	workers := make([]WorkerView, 0, len(d.workers))
	for _, w := range d.workers {
		if w.bound != "" && !viewed[w.bound] && d.sessions[w.bound] != nil {
			// Bound to a session that appeared after the views were
			// gathered (a stream opened meanwhile): left for the next
			// plan, which knows the session, rather than unbound as
			// unknown.
			continue
		}
		busy := w.stream != nil && w.stream.session.id == w.bound && len(w.stream.tasks) > 0
		blocked := w.stream != nil && w.stream.session.id == w.bound && len(w.stream.stopped) > 0
		workers = append(workers, WorkerView{ID: w.id, Bound: w.bound, Busy: busy || blocked,
			Draining: w.draining, Blocked: blocked})
	}
	for _, dec := range Plan(Input{Now: now, Sessions: views, Workers: workers, Preemption: d.opts.Preemption}) {
		d.applyLocked(dec, now)
	}
}

// hasWorkersLocked reports whether a registered worker is bound to the
// session: its view must stay so that Plan can release the worker.
func (d *Dispatcher) hasWorkersLocked(id string) bool {
	for _, w := range d.workers {
		if w.bound == id {
			return true
		}
	}
	return false
}

func (d *Dispatcher) applyLocked(dec Decision, now time.Time) {
	w := d.workers[dec.Worker]
	switch dec.Action {
	case Bind:
		w.bound, w.boundAt = dec.Session, now
		if s := d.sessions[dec.Session]; s != nil {
			s.lastServed = d.round
		}
		w.send(&griddpb.Instruction{Type: griddpb.InstructionType_INSTRUCTION_TYPE_BIND, SessionId: dec.Session})
	case Unbind:
		w.bound = ""
		requeued := 0
		if st := w.stream; st != nil && st.session.id == dec.Session {
			// The stream takes no new batches; with drain it stays open
			// until the worker has sent the results of what it holds.
			st.unbound = true
			st.signal()
			if dec.Abort {
				requeued = d.revokeLocked(st)
			}
		}
		if dec.Reason == ReasonPreempt || dec.Reason == ReasonMin || dec.Reason == ReasonFair {
			d.log.Info("worker moved", "worker", w.id, "from", dec.Session, "reason", string(dec.Reason),
				"abort", dec.Abort, "requeued", requeued)
		} else {
			d.log.Debug("worker released", "worker", w.id, "session", dec.Session, "reason", string(dec.Reason))
		}
		w.send(&griddpb.Instruction{Type: griddpb.InstructionType_INSTRUCTION_TYPE_UNBIND,
			SessionId: dec.Session, Abort: dec.Abort})
	}
}

// revokeLocked takes back every task st holds, as ready again without
// counting an attempt, and ends the stream: results the worker sends for
// them afterwards never reach the server, so a task cancelled by the abort
// cannot come back as a failed attempt, and the slots it held are freed
// here and only here. It returns how many tasks went back.
func (d *Dispatcher) revokeLocked(st *Stream) int {
	s := st.session
	n := 0
	if d.sessions[s.id] == s {
		for id := range st.tasks {
			if ts := s.tasks[id]; ts != nil && ts.stream == st {
				d.readyLocked(s, ts.task)
				n++
			}
		}
	}
	st.cancel()
	return n
}
