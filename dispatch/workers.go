package dispatch

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/rpc/griddpb"
)

// Worker is a worker registered on the WorkerUpdate stream of this leader.
type Worker struct {
	id, node, pod string
	connected     time.Time
	instr         chan *griddpb.Instruction
	cancel        context.CancelFunc
	bound         string  // session it was told to bind to
	stream        *Stream // its open WorkerStream, if any

	// From its periodic WorkerStatus reports (see WorkerReport).
	boundAt     time.Time // when it was last told to bind
	draining    bool      // shutting down: never bound again
	state       griddpb.WorkerState
	reported    string // the session it says it is bound to
	concurrency int32
	lastReport  time.Time
}

// Instructions delivers BIND and UNBIND for the worker's WorkerUpdate
// stream.
func (w *Worker) Instructions() <-chan *griddpb.Instruction { return w.instr }

// send never blocks the dispatcher: a worker that does not read its
// instructions misses some and is re-planned on the next tick.
func (w *Worker) send(in *griddpb.Instruction) {
	select {
	case w.instr <- in:
	default:
	}
}

// RegisterWorker adds a worker reachable through its WorkerUpdate stream.
// A worker that registers again (reconnected) replaces its old
// registration, whose context is cancelled. The returned context ends when
// the registration does (replaced, or leadership lost).
func (d *Dispatcher) RegisterWorker(ctx context.Context, id, node, pod string) (*Worker, context.Context, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &Worker{id: id, node: node, pod: pod, instr: make(chan *griddpb.Instruction, 64), cancel: cancel,
		connected: time.Now()}
	d.mu.Lock()
	if !d.active {
		d.mu.Unlock()
		cancel()
		return nil, nil, ErrNotActive
	}
	if old := d.workers[id]; old != nil {
		old.cancel()
		if old.stream != nil && old.stream.worker == old {
			w.stream = old.stream
			w.stream.worker = w
			w.bound = old.bound
		}
	}
	d.workers[id] = w
	d.mu.Unlock()
	d.poke()
	return w, ctx, nil
}

// UnregisterWorker removes w if it is still the registration of its id.
func (d *Dispatcher) UnregisterWorker(w *Worker) {
	w.cancel()
	d.mu.Lock()
	if d.workers[w.id] == w {
		delete(d.workers, w.id)
	}
	d.mu.Unlock()
	d.poke()
}

// Stream is a worker's WorkerStream for one session: the dispatcher hands it
// batches, at most the session's max_inflight_batches_per_worker at a time.
type Stream struct {
	workerID string
	opened   time.Time
	session  *session
	worker   *Worker // nil for a worker that never registered
	epoch    uint64
	wake     chan struct{}
	cancel   context.CancelFunc
	unbound  bool

	nextBatch uint64
	batches   map[uint64]int    // batch -> tasks without an outcome
	tasks     map[string]uint64 // task -> batch

	stopQ   []string         // to send in the next Batch.stop_ids
	stopped map[string]int32 // task -> attempt told to stop, whose handler has not ended yet
	expired []LeaseExpiry    // for the handler to propose (TakeExpired)
}

func (st *Stream) signal() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// OpenStream registers a WorkerStream of workerID for the session. The
// session must exist and be open. A worker that is registered on
// WorkerUpdate becomes bound to the session; a worker that never registered
// may still pull tasks. The returned context ends when the stream must
// close (session closed, stream replaced, leadership lost).
func (d *Dispatcher) OpenStream(ctx context.Context, workerID, sessionID string) (*Stream, context.Context, error) {
	info, ok := d.fsm.Session(sessionID)
	if !ok {
		return nil, nil, fmt.Errorf("session %q: %w", sessionID, fsm.ErrSessionNotFound)
	}
	if info.Closed {
		return nil, nil, fmt.Errorf("session %q: %w", sessionID, fsm.ErrSessionClosed)
	}
	ctx, cancel := context.WithCancel(ctx)
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.active {
		cancel()
		return nil, nil, ErrNotActive
	}
	s := d.sessionLocked(sessionID)
	applyAttrs(s, info)
	st := &Stream{
		workerID: workerID, session: s, epoch: d.epoch, opened: time.Now(),
		wake: make(chan struct{}, 1), cancel: cancel,
		batches: map[uint64]int{}, tasks: map[string]uint64{}, stopped: map[string]int32{},
	}
	if w := d.workers[workerID]; w != nil {
		// One stream per worker, except that a stream drained away from
		// another session (preempted or moved) finishes its batches while
		// the new one starts.
		if old := w.stream; old != nil && !(old.unbound && old.session.id != sessionID) {
			old.cancel()
		}
		w.stream, w.bound, st.worker = st, sessionID, w
	}
	s.streams[st] = struct{}{}
	st.signal()
	return st, ctx, nil
}

// CloseStream unregisters st. Tasks it still held are ready again at once,
// without counting as an attempt.
func (d *Dispatcher) CloseStream(st *Stream) {
	st.cancel()
	d.mu.Lock()
	s := st.session
	delete(s.streams, st)
	if st.worker != nil && st.worker.stream == st {
		st.worker.stream = nil
		if st.worker.bound == s.id {
			st.worker.bound = ""
		}
	}
	requeued := 0
	if d.sessions[s.id] == s {
		for id := range st.tasks {
			if ts := s.tasks[id]; ts != nil && ts.stream == st {
				d.readyLocked(s, ts.task)
				requeued++
			}
		}
	}
	d.mu.Unlock()
	if requeued > 0 {
		d.log.Debug("worker stream closed, tasks ready again", "worker", st.workerID, "session", s.id, "tasks", requeued)
	}
	d.poke()
}

// Next blocks until the stream may take a batch and the session has ready
// tasks, or until tasks the stream holds must stop, and returns that batch
// (whose stop_ids list those tasks; it may carry no messages). After it
// returns, the caller proposes what TakeExpired gives. It returns ctx's
// error when ctx ends, and ErrStreamClosed when the stream must end.
func (d *Dispatcher) Next(ctx context.Context, st *Stream) (*griddpb.Batch, error) {
	for {
		if b, err := d.take(st); b != nil || err != nil {
			return b, err
		}
		select {
		case <-st.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (d *Dispatcher) take(st *Stream) (*griddpb.Batch, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := st.session
	if !d.active || st.epoch != d.epoch || d.sessions[s.id] != s {
		return nil, ErrStreamClosed
	}
	b := &griddpb.Batch{SessionId: s.id}
	if len(st.stopQ) > 0 {
		b.StopIds, st.stopQ = st.stopQ, nil
	}
	if st.unbound || len(st.batches) >= s.maxInflight || s.queued == 0 || len(st.stopped) > 0 {
		if len(b.StopIds) > 0 {
			return b, nil
		}
		return nil, nil
	}
	// Share the ready tasks among the session's streams.
	n := (s.queued + len(s.streams) - 1) / len(s.streams)
	n = min(max(n, 1), d.opts.BatchSize)
	st.nextBatch++
	id := st.nextBatch
	now := time.Now()
	b.Messages = make([]*griddpb.Message, 0, n)
	for len(b.Messages) < n {
		e, ok := s.ready.Peek()
		if !ok {
			break
		}
		ts := s.tasks[e.ID]
		if ts == nil || ts.stream != nil || ts.delayed || ts.task.Seq != e.Seq {
			s.ready.Pop()
			continue // stale entry: the task got an outcome, was requeued or delayed
		}
		t := ts.task // the latest copy: the entry may predate a failed attempt
		// A batch names one shared-data requirement for all its tasks: a
		// task that needs another level (a retried task of an earlier
		// iteration among new ones) starts the next batch, or it would run
		// against the wrong level.
		if len(b.Messages) > 0 && (t.UseSharedData != b.UseSharedData || t.RequiredLevel != b.RequiredSharedDataUpdateLevel) {
			break
		}
		s.ready.Pop()
		s.queued--
		s.running++
		ts.stream, ts.batch, ts.since = st, id, now
		st.tasks[t.ID] = id
		d.leaseLocked(s, ts, now)
		b.Messages = append(b.Messages, &griddpb.Message{
			Id: t.ID, Payload: t.Payload, Priority: t.Priority, Attempt: t.Attempts + 1,
		})
		b.UseSharedData, b.RequiredSharedDataUpdateLevel = t.UseSharedData, t.RequiredLevel
	}
	if len(b.Messages) == 0 {
		if len(b.StopIds) > 0 {
			return b, nil
		}
		return nil, nil
	}
	st.batches[id] = len(b.Messages)
	return b, nil
}

// WorkerSnapshot describes a worker connected to this leader.
type WorkerSnapshot struct {
	ID, Node, Pod string
	Session       string // bound session, "" when idle
	Running       int    // tasks it holds
	Connected     time.Time
	Registered    bool // on WorkerUpdate; false: pulls on WorkerStream only
	// From its last WorkerStatus report (registered workers only).
	State       griddpb.WorkerState
	Concurrency int32
	LastReport  time.Time
}

// Workers lists the workers connected to this leader, sorted by id: those
// registered on WorkerUpdate and those that only opened a WorkerStream.
func (d *Dispatcher) Workers() []WorkerSnapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]WorkerSnapshot, 0, len(d.workers))
	seen := map[string]bool{}
	for _, w := range d.workers {
		ws := WorkerSnapshot{ID: w.id, Node: w.node, Pod: w.pod, Session: w.bound, Connected: w.connected, Registered: true,
			State: w.state, Concurrency: w.concurrency, LastReport: w.lastReport}
		if w.stream != nil {
			ws.Running = len(w.stream.tasks)
		}
		seen[w.id] = true
		out = append(out, ws)
	}
	for _, s := range d.sessions {
		for st := range s.streams {
			if st.worker != nil || seen[st.workerID] {
				continue
			}
			out = append(out, WorkerSnapshot{ID: st.workerID, Session: s.id, Running: len(st.tasks), Connected: st.opened})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
