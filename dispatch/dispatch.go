// Package dispatch hands pending tasks to workers. Its state is leader-local
// and rebuilt from the replicated state after every election: which worker
// holds which task, the ready queues, worker bindings and open streams. Only
// outcomes are replicated (by the caller, through Raft); when a worker's
// stream breaks its tasks are ready again at once, and when leadership moves
// every task without an outcome is dispatched anew by the next leader.
//
// Lock order: the FSM's lock, then Dispatcher.mu. The FSM calls the
// Listener methods with its lock held, so the dispatcher never calls the
// FSM while holding mu.
package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/queue"
	"github.com/gridd/gridd/rpc/griddpb"
)

// Errors returned to stream handlers.
var (
	// ErrNotActive: this node's dispatcher is not serving (not the leader,
	// or the leader is still catching up after its election).
	ErrNotActive = errors.New("dispatcher not active on this node")
	// ErrStreamClosed: the stream was replaced, its session closed, or
	// leadership moved.
	ErrStreamClosed = errors.New("stream closed")
)

// DefaultBatchSize caps the tasks of one dispatched batch.
const DefaultBatchSize = 100

// Options tune a Dispatcher.
type Options struct {
	BatchSize    int           // default DefaultBatchSize
	PlanInterval time.Duration // periodic re-plan; default 1s
	// Preemption says how a worker taken from a preemptible session leaves
	// it; default PreemptDrain.
	Preemption Preemption
	Logger     *slog.Logger

	// CloseSession closes a session through the replicated log; the leader
	// calls it for cleanup_on_client_exit. Nil turns that cleanup off.
	CloseSession func(ctx context.Context, sessionID string) error
	// ClientExitGrace: how long such a session waits for a new results
	// stream; default DefaultClientExitGrace.
	ClientExitGrace time.Duration
}

// Dispatcher is the leader's scheduler. Activate it when this node becomes
// leader (after a Barrier) and Deactivate it when leadership is lost.
type Dispatcher struct {
	fsm  *fsm.FSM
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	active   bool
	epoch    uint64
	sessions map[string]*session
	workers  map[string]*Worker
	clients  map[clientKey]*clientClaim
	stop     context.CancelFunc
	loopDone chan struct{}
	wake     chan struct{}
	exits    exitWatch
	round    uint64 // planning rounds, for SessionView.LastServed

	// Retry backoff and leases (delay.go, lease.go), run by one timer
	// goroutine that sleeps until timerAt (unix ns, 0: nothing armed).
	delays     timerHeap[delayEntry]
	leases     timerHeap[leaseEntry]
	timerAt    int64
	timerWake  chan struct{}
	timersDone chan struct{}
}

type clientKey struct {
	session string
	kind    string
}

type clientClaim struct {
	cancel context.CancelFunc
	notify chan struct{}
	early  []*griddpb.Message // results sent before their commit
}

// session is the dispatcher's view of one open session.
type session struct {
	id          string
	priority    int32
	maxWorkers  int32
	maxInflight int
	ready       queue.Priority[fsm.Task]
	tasks       map[string]*taskState
	streams     map[*Stream]struct{}
	running     int
	queued      int

	// Scheduling (see Plan).
	minWorkers  int32
	preemptible bool
	idleTimeout time.Duration
	lastActive  time.Time     // last plan that saw tasks ready or running
	lastServed  uint64        // last planning round that bound a worker to it
	delayed     int           // tasks waiting for their retry backoff
	taskTimeout time.Duration // lease of a handed-out task; 0: none
}

// taskState: delayed (waiting for its retry backoff), queued (ready), or
// held by a stream's batch (stream != nil).
type taskState struct {
	task     fsm.Task
	stream   *Stream
	batch    uint64
	delayed  bool
	since    time.Time // held: when it was handed out
	leaseEnd int64     // held: unix ns when its lease runs out; 0: no lease (or stopped)
}

// New returns an inactive dispatcher over the given state machine.
func New(f *fsm.FSM, opts Options) *Dispatcher {
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.PlanInterval <= 0 {
		opts.PlanInterval = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ClientExitGrace <= 0 {
		opts.ClientExitGrace = DefaultClientExitGrace
	}
	return &Dispatcher{
		fsm:      f,
		opts:     opts,
		log:      opts.Logger.With("component", "dispatch"),
		sessions: map[string]*session{},
		workers:  map[string]*Worker{},
		clients:  map[clientKey]*clientClaim{},
		wake:     make(chan struct{}, 1),
		exits:    exitWatch{timers: map[string]*exitTimer{}},

		timerWake: make(chan struct{}, 1),
	}
}

// Activate starts serving: it subscribes to the state machine, loads every
// pending task as ready, and starts the placement loop. Call it on the new
// leader once its state machine has applied every committed entry.
func (d *Dispatcher) Activate() {
	d.Deactivate()
	d.fsm.Subscribe(d, func(pending []fsm.Task) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.active = true
		d.epoch++
		for _, t := range pending {
			d.readyLocked(d.sessionLocked(t.Session), t)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done, timersDone := make(chan struct{}), make(chan struct{})
	d.mu.Lock()
	d.stop, d.loopDone, d.timersDone = cancel, done, timersDone
	n := 0
	for _, s := range d.sessions {
		n += s.queued
	}
	d.mu.Unlock()
	d.log.Info("dispatcher active", "pending", n)
	go d.loop(ctx, done)
	d.armClientExits()
	go d.timers(ctx, timersDone)
	d.poke()
}

// Deactivate stops serving: every worker, worker stream and client stream
// handled here ends (their clients reconnect to the new leader) and the
// leader-local state is dropped.
func (d *Dispatcher) Deactivate() {
	d.fsm.Subscribe(nil, nil)
	d.mu.Lock()
	wasActive := d.active
	d.active = false
	d.epoch++
	stop, done, timersDone := d.stop, d.loopDone, d.timersDone
	d.stop, d.loopDone, d.timersDone = nil, nil, nil
	for _, w := range d.workers {
		w.cancel()
	}
	for _, s := range d.sessions {
		for st := range s.streams {
			st.cancel()
		}
	}
	for _, c := range d.clients {
		c.cancel()
	}
	d.workers = map[string]*Worker{}
	d.sessions = map[string]*session{}
	d.clients = map[clientKey]*clientClaim{}
	d.delays, d.leases, d.timerAt = nil, nil, 0
	d.mu.Unlock()
	d.stopClientExits()
	if stop != nil {
		stop()
		<-done
		<-timersDone
	}
	if wasActive {
		d.log.Info("dispatcher inactive")
	}
}

// Active reports whether this dispatcher serves workers and clients.
func (d *Dispatcher) Active() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.active
}

// Running returns how many tasks of the session workers hold right now.
func (d *Dispatcher) Running(sessionID string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.sessions[sessionID]; s != nil {
		return s.running
	}
	return 0
}

func (d *Dispatcher) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Dispatcher) sessionLocked(id string) *session {
	s := d.sessions[id]
	if s == nil {
		s = &session{
			id:          id,
			priority:    fsm.DefaultPriority,
			maxInflight: fsm.DefaultMaxInflight,
			tasks:       map[string]*taskState{},
			streams:     map[*Stream]struct{}{},
			idleTimeout: fsm.DefaultIdleTimeoutMs * time.Millisecond,
			lastActive:  time.Now(),
		}
		d.sessions[id] = s
	}
	return s
}

// readyLocked makes t ready, taking it back from a stream that held it. A
// task whose retry backoff is not over waits for it first.
func (d *Dispatcher) readyLocked(s *session, t fsm.Task) {
	ts := s.tasks[t.ID]
	queued := false
	switch {
	case ts == nil:
		ts = &taskState{}
		s.tasks[t.ID] = ts
	case ts.stream != nil:
		d.releaseLocked(s, t.ID, ts)
	case ts.delayed:
		s.undelay(ts) // requeued again: the newer not-before wins
	default:
		queued = true
	}
	ts.task = t
	if notBeforeFuture(t, time.Now()) {
		if queued {
			s.queued-- // its ready-queue entry is skipped when popped
		}
		d.delayLocked(s, ts)
		return
	}
	if !queued {
		d.queueLocked(s, ts)
	}
}

// queueLocked puts ts in its session's ready queue.
func (d *Dispatcher) queueLocked(s *session, ts *taskState) {
	s.queued++
	s.ready.Push(ts.task, ts.task.Priority, ts.task.Seq)
	for st := range s.streams {
		st.signal()
	}
}

// releaseLocked frees the batch slot a task held on its stream.
func (d *Dispatcher) releaseLocked(s *session, id string, ts *taskState) {
	st := ts.stream
	ts.stream = nil
	ts.leaseEnd = 0
	s.running--
	delete(st.tasks, id)
	if n := st.batches[ts.batch] - 1; n > 0 {
		st.batches[ts.batch] = n
	} else {
		delete(st.batches, ts.batch)
		st.signal()
	}
}

// TasksReady implements fsm.Listener.
func (d *Dispatcher) TasksReady(sessionID string, tasks []fsm.Task) {
	d.mu.Lock()
	s := d.sessionLocked(sessionID)
	for _, t := range tasks {
		d.readyLocked(s, t)
	}
	d.mu.Unlock()
	d.poke()
}

// TasksDone implements fsm.Listener.
func (d *Dispatcher) TasksDone(sessionID string, ids []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.sessions[sessionID]
	if s == nil {
		return
	}
	for _, id := range ids {
		ts := s.tasks[id]
		if ts == nil {
			continue
		}
		switch {
		case ts.stream != nil:
			d.releaseLocked(s, id, ts)
		case ts.delayed:
			s.undelay(ts) // its delay entry is skipped when due
		default:
			s.queued-- // its heap entry is skipped when popped
		}
		delete(s.tasks, id)
	}
}

// ResultsReady implements fsm.Listener.
func (d *Dispatcher) ResultsReady(sessionID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, kind := range []string{KindResults, KindDeadLetters} {
		if c := d.clients[clientKey{sessionID, kind}]; c != nil {
			select {
			case c.notify <- struct{}{}:
			default:
			}
		}
	}
}

// SessionChanged implements fsm.Listener.
func (d *Dispatcher) SessionChanged(info fsm.SessionInfo) {
	d.mu.Lock()
	if info.Closed {
		if s := d.sessions[info.ID]; s != nil {
			for st := range s.streams {
				st.cancel()
			}
			delete(d.sessions, info.ID)
		}
		for _, kind := range []string{KindResults, KindDeadLetters} {
			if c := d.clients[clientKey{info.ID, kind}]; c != nil {
				c.cancel()
			}
		}
	} else if s := d.sessions[info.ID]; s != nil {
		applyAttrs(s, info)
	}
	d.clientExitSessionChangedLocked(info.ID, info.Closed, info.Attrs.CleanupOnClientExit)
	d.mu.Unlock()
	d.poke()
}

func applyAttrs(s *session, info fsm.SessionInfo) {
	s.priority = info.Attrs.Priority
	s.maxWorkers = info.Attrs.MaxWorkers
	s.minWorkers = info.Attrs.MinWorkers
	s.preemptible = info.Attrs.Preemptible
	if ms := info.Attrs.IdleTimeoutMs; ms > 0 {
		s.idleTimeout = time.Duration(ms) * time.Millisecond
	}
	if n := int(info.Attrs.MaxInflightBatchesPerWorker); n > 0 {
		s.maxInflight = n
	}
	s.taskTimeout = time.Duration(info.Attrs.TaskTimeoutMs) * time.Millisecond
}

// loop re-plans worker bindings on every event and periodically.
func (d *Dispatcher) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(d.opts.PlanInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-t.C:
		}
		d.plan()
	}
}
