package worker

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/internal/conn"
)

// Results are coalesced: one message carries every result that finished
// within coalesceDelay of the first, or the rest of a received batch.
const (
	coalesceDelay   = time.Millisecond
	maxResultCount  = 1000
	maxResultBytes  = 1 << 20
	unknownErrorMsg = "task failed (handler returned an error with an empty message)"
	stoppedMsg      = "stopped by the server"
)

// binding is the worker's attachment to one session: one WorkerStream that
// brings task batches and takes results back.
type binding struct {
	w       *worker
	session string
	ctx     context.Context // the stream's and the handlers' context
	cancel  context.CancelFunc
	results chan outcome
	stopCh  chan struct{} // closed by halt: take no more batches
	dropCh  chan struct{} // closed by halt(true): start no more received tasks

	// inflight counts received tasks whose result is not yet queued; it is
	// only increased under mu while !stopping, so Wait never races an Add.
	inflight sync.WaitGroup

	mu       sync.Mutex
	stopping bool
	dropping bool
	aborted  bool
	again    *grpc.ClientConn // bound again while stopping: restart on it

	// Received batches wait here for task slots, so that the receive loop
	// never blocks and a stop_ids reaches a hung task at once.
	queue  []*griddpb.Batch
	queued chan struct{}

	// tmu guards the tasks received and not finished, and what waits to
	// be sent besides results: lease extensions and stop confirmations.
	tmu     sync.Mutex
	tasks   map[string]*runTask
	extend  map[string]struct{}
	confirm []*griddpb.Message
	kick    chan struct{} // extend or confirm has something
}

// runTask is a task received and not finished. A stop cancels its handler
// (or keeps it from starting) and replaces its result by a confirmation,
// which the server ignores except to know the task's slot is free.
type runTask struct {
	attempt int32
	cancel  context.CancelFunc // nil until it starts
	stopped bool
}

type outcome struct {
	msg       *griddpb.Message
	batchDone bool // the last task of its received batch
}

func newBinding(w *worker, session string) *binding {
	b := &binding{w: w, session: session, results: make(chan outcome, w.opts.Concurrency),
		stopCh: make(chan struct{}), dropCh: make(chan struct{}), queued: make(chan struct{}, 1),
		tasks: map[string]*runTask{}, extend: map[string]struct{}{}, kick: make(chan struct{}, 1)}
	b.ctx, b.cancel = context.WithCancel(w.base)
	return b
}

// halt stops taking batches; with drop it also stops starting tasks
// already received (the server redispatches them when the stream closes).
// Running tasks finish and their results are sent, then the stream closes.
func (b *binding) halt(drop bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.stopping {
		b.stopping = true
		close(b.stopCh)
	}
	if drop && !b.dropping {
		b.dropping = true
		close(b.dropCh)
	}
}

// abort ends the binding now; results of running tasks are dropped. final
// (the WorkerUpdate stream broke) also forgets a BIND received meanwhile;
// an abort instruction (preemption) does not, so the leader can bind the
// worker to the session again later.
func (b *binding) abort(final bool) {
	b.mu.Lock()
	if final {
		b.aborted = true
	}
	b.mu.Unlock()
	b.halt(true)
	b.cancel()
}

// rebind records a BIND for a binding that is winding down. A BIND for a
// binding still running is a repeat and changes nothing.
func (b *binding) rebind(cc *grpc.ClientConn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopping && !b.aborted {
		b.again = cc
	}
}

func (b *binding) rebindConn() *grpc.ClientConn {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.aborted {
		return nil
	}
	return b.again
}

func (b *binding) run(cc *grpc.ClientConn) {
	defer b.w.unregister(b)
	defer b.cancel()
	log := b.w.log.With("session", b.session)
	ctx := b.w.outgoing(b.ctx, conn.MDSessionID, b.session)
	st, err := griddpb.NewQueueClient(cc).WorkerStream(ctx)
	if err != nil {
		log.Info("cannot open worker stream", "err", err)
		b.halt(true)
		return
	}
	var wg sync.WaitGroup
	wg.Go(b.starter)
	wg.Go(func() {
		if err := b.sendResults(st); err != nil {
			log.Info("sending results failed", "err", err)
			b.cancel()
		}
	})
	// Closes results once the binding stops and its tasks are done. Not
	// waited for: a handler that ignores its cancelled context must not
	// hold up reconnection or shutdown.
	go func() {
		<-b.stopCh
		b.inflight.Wait()
		close(b.results)
	}()
	err = b.receive(st)
	log.Debug("worker stream ended", "err", err)
	// The stream is over, cleanly or not: no result can be sent any more,
	// so tasks still running are cancelled (the server runs them again).
	b.halt(true)
	b.cancel()
	wg.Wait()
}

func (b *binding) receive(st griddpb.Queue_WorkerStreamClient) error {
	for {
		batch, err := st.Recv()
		if err != nil {
			return err
		}
		b.w.heard()
		if ids := batch.GetStopIds(); len(ids) > 0 {
			b.stop(ids)
		}
		if len(batch.GetMessages()) > 0 {
			b.enqueue(batch)
		}
	}
}

// stop cancels the listed tasks' handlers and drops their results: the
// server timed them out or they were cancelled. The server gives this
// stream no new task until each stop is confirmed: a running task confirms
// when its handler returns, one not started yet at once. A task no longer
// here already sent its result, which confirms the stop as well.
func (b *binding) stop(ids []string) {
	b.tmu.Lock()
	defer b.tmu.Unlock()
	for _, id := range ids {
		rt := b.tasks[id]
		if rt == nil || rt.stopped {
			continue
		}
		rt.stopped = true
		if rt.cancel != nil {
			rt.cancel()
			continue
		}
		b.confirm = append(b.confirm, &griddpb.Message{Id: id, Attempt: rt.attempt, Error: stoppedMsg})
		b.kickLocked()
	}
}

func (b *binding) kickLocked() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// begin starts tracking a received task as running, unless it was stopped
// before it started.
func (b *binding) begin(m *griddpb.Message) (context.Context, *runTask, bool) {
	b.tmu.Lock()
	defer b.tmu.Unlock()
	rt := b.tasks[m.GetId()]
	if rt == nil || rt.attempt != m.GetAttempt() || rt.stopped || rt.cancel != nil {
		if rt != nil && rt.attempt == m.GetAttempt() && rt.cancel == nil {
			delete(b.tasks, m.GetId())
		}
		return nil, nil, false
	}
	ctx, cancel := context.WithCancel(b.ctx)
	rt.cancel = cancel
	return context.WithValue(ctx, taskKey{}, &taskCtl{b: b, id: m.GetId(), rt: rt}), rt, true
}

// stoppedUnstarted reports whether a received task was stopped before it
// started, so that it need not wait for a slot.
func (b *binding) stoppedUnstarted(m *griddpb.Message) bool {
	b.tmu.Lock()
	defer b.tmu.Unlock()
	rt := b.tasks[m.GetId()]
	return rt != nil && rt.attempt == m.GetAttempt() && rt.stopped && rt.cancel == nil
}

// enqueue hands a received batch to the starter.
func (b *binding) enqueue(batch *griddpb.Batch) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopping {
		return
	}
	b.inflight.Add(len(batch.GetMessages()))
	b.tmu.Lock()
	for _, m := range batch.GetMessages() {
		b.tasks[m.GetId()] = &runTask{attempt: m.GetAttempt()}
	}
	b.tmu.Unlock()
	b.queue = append(b.queue, batch)
	select {
	case b.queued <- struct{}{}:
	default:
	}
}

// starter starts the queued batches' tasks in order as slots free up,
// until the binding drops its tasks or ends.
func (b *binding) starter() {
	defer func() {
		b.mu.Lock()
		for _, batch := range b.queue {
			b.inflight.Add(-len(batch.GetMessages()))
		}
		b.queue = nil
		b.mu.Unlock()
	}()
	for {
		b.mu.Lock()
		var batch *griddpb.Batch
		if len(b.queue) > 0 {
			batch = b.queue[0]
			b.queue[0] = nil
			b.queue = b.queue[1:]
		}
		b.mu.Unlock()
		if batch == nil {
			select {
			case <-b.queued:
				continue
			case <-b.dropCh:
				return
			case <-b.ctx.Done():
				return
			}
		}
		if !b.take(batch) {
			return
		}
	}
}

// take starts the tasks of a received batch as slots free up. It reports
// false when the binding stopped starting tasks.
func (b *binding) take(batch *griddpb.Batch) bool {
	msgs := batch.GetMessages()
	session := batch.GetSessionId()
	if session == "" {
		session = b.session
	}
	var remaining atomic.Int64
	remaining.Store(int64(len(msgs)))
	skip := func() {
		remaining.Add(-1)
		b.inflight.Done()
	}
	for i, m := range msgs {
		if b.stoppedUnstarted(m) {
			b.begin(m) // forgets it
			skip()
			continue
		}
		select {
		case b.w.sem <- struct{}{}:
		case <-b.dropCh:
			b.inflight.Add(-(len(msgs) - i))
			return false
		case <-b.ctx.Done():
			b.inflight.Add(-(len(msgs) - i))
			return false
		}
		ctx, rt, ok := b.begin(m)
		if !ok { // stopped while it waited for the slot
			<-b.w.sem
			skip()
			continue
		}
		t := Task{SessionID: session, ID: m.GetId(), Payload: m.GetPayload(), Attempt: m.GetAttempt()}
		go b.execute(ctx, rt, t, batch, &remaining)
	}
	return true
}

// untrack forgets a finished task and reports whether it was stopped.
func (b *binding) untrack(id string, rt *runTask) bool {
	rt.cancel()
	b.tmu.Lock()
	defer b.tmu.Unlock()
	if b.tasks[id] == rt {
		delete(b.tasks, id)
	}
	delete(b.extend, id)
	return rt.stopped
}

func (b *binding) execute(ctx context.Context, rt *runTask, t Task, batch *griddpb.Batch,
	remaining *atomic.Int64) {
	defer b.inflight.Done()
	var out []byte
	var err error
	if batch.GetUseSharedData() {
		// In the task's slot and under its lease: the first task of a level
		// downloads it, the others wait for that download.
		t.SharedDataLevel, t.SharedData, err = b.w.shared.get(ctx, t.SessionID,
			batch.GetRequiredSharedDataUpdateLevel())
	}
	if err == nil {
		out, err = b.w.call(ctx, t)
	}
	<-b.w.sem
	msg := &griddpb.Message{Id: t.ID, Attempt: t.Attempt}
	if b.untrack(t.ID, rt) {
		// The server stopped this attempt and ignores its result; this
		// message only tells it that the handler ended and freed its slot.
		msg.Error = stoppedMsg
	} else if err != nil {
		msg.Error = err.Error()
		if msg.Error == "" {
			msg.Error = unknownErrorMsg
		}
	} else {
		msg.Payload = out
	}
	select {
	case b.results <- outcome{msg: msg, batchDone: remaining.Add(-1) == 0}:
	case <-b.ctx.Done():
	}
}

// call runs the handler, turning a panic into a failed attempt.
func (w *worker) call(ctx context.Context, t Task) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			w.log.Error("task handler panicked", "session", t.SessionID, "task", t.ID,
				"panic", r, "stack", string(debug.Stack()))
			out, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return w.h(ctx, t)
}

// sendResults coalesces results into WorkerStreamMessages. When results is
// closed (the binding stopped and its tasks are done) it flushes and
// half-closes the stream, so the server ends it.
func (b *binding) sendResults(st griddpb.Queue_WorkerStreamClient) error {
	var buf []*griddpb.Message
	size := 0
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		m := &griddpb.WorkerStreamMessage{Results: &griddpb.Batch{SessionId: b.session, Messages: buf}}
		buf, size = nil, 0
		return st.Send(m)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	armed := false
	for {
		select {
		case r, ok := <-b.results:
			if !ok {
				if err := flush(); err != nil {
					return err
				}
				// The server records the results received before the
				// half-close, then ends the stream.
				return st.CloseSend()
			}
			buf = append(buf, r.msg)
			size += len(r.msg.Payload) + len(r.msg.Error)
			if r.batchDone || len(buf) >= maxResultCount || size >= maxResultBytes {
				if err := flush(); err != nil {
					return err
				}
			} else if !armed {
				timer.Reset(coalesceDelay)
				armed = true
			}
		case <-timer.C:
			armed = false
			if err := flush(); err != nil {
				return err
			}
		case <-b.kick:
			if m := b.takeControl(); m != nil {
				if err := st.Send(m); err != nil {
					return err
				}
			}
		case <-b.ctx.Done():
			return nil
		}
	}
}
