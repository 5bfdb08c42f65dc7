package dispatch

import (
	"time"

	"github.com/gridd/gridd/rpc/griddpb"
)

// bindGrace is how long after a BIND a worker may still report itself idle:
// the report may have left before the BIND arrived. After it, an idle
// report means the BIND was lost (instructions to a slow reader are
// dropped) or the worker could not open its stream, and the worker is
// treated as idle again so that the next plan binds it anew.
const bindGrace = 3 * time.Second

// WorkerReport records a worker's periodic WorkerStatus. A worker that
// reports DRAINING is never bound again; one that reports IDLE while the
// dispatcher believes it bound, with no stream open, is free again.
func (d *Dispatcher) WorkerReport(w *Worker, st *griddpb.WorkerStatus) {
	now := time.Now()
	d.mu.Lock()
	if d.workers[w.id] != w {
		d.mu.Unlock()
		return // replaced, or leadership moved
	}
	w.state, w.reported, w.concurrency, w.lastReport = st.GetState(), st.GetSessionId(), st.GetConcurrency(), now
	replan := false
	if st.GetState() == griddpb.WorkerState_WORKER_STATE_DRAINING && !w.draining {
		w.draining, replan = true, true
	}
	if st.GetState() == griddpb.WorkerState_WORKER_STATE_IDLE && w.bound != "" && w.stream == nil &&
		now.Sub(w.boundAt) > bindGrace {
		d.log.Info("worker reports idle but was bound; binding again", "worker", w.id, "session", w.bound)
		w.bound, replan = "", true
	}
	d.mu.Unlock()
	if replan {
		d.poke()
	}
}
