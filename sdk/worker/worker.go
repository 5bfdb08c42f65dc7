// Package worker is the Go SDK for programs that execute gridd tasks.
//
// Run registers the worker with the cluster's leader, waits to be bound to a
// session, runs that session's tasks with the Handler (Concurrency at a
// time) and streams the results back. It survives leader failovers: when a
// stream breaks it finds the new leader and registers again. Execution is
// at-least-once: a task whose result was lost with a dying leader or worker
// runs again, so handlers should be safe to repeat.
//
// Leases: when the session sets task_timeout_ms, a task the worker holds
// longer than that is timed out by the server (a failed attempt, retried
// elsewhere) and its handler's context is cancelled. A handler that needs
// longer renews its lease with ExtendLease(ctx), or KeepLease; nothing is
// renewed automatically, so that a hung handler still times out.
//
// Shared data: tasks submitted with UseSharedData get the level of the
// session's shared data they require in Task.SharedData, fetched before the
// handler runs, once per worker and level, from the node cache
// (Options.NodeCacheAddr) or else the central cache. The worker keeps the
// newest two levels of the two sessions it used last in memory.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/internal/conn"
)

// Task is one task to execute. Attempt is 1 on the first try; a task can be
// run again after a failure or a lost result.
//
// SharedData is set for tasks that use the session's shared data: the bytes
// of the level they require (SharedDataLevel; when the task asked for the
// latest, the level that was the latest when it was fetched). It is shared
// by every task using that level and must not be modified. Fetching it
// happens in the task's slot, before the handler, and counts against the
// task's lease; a failed fetch fails the attempt with an error naming the
// session and level, and the server retries the task.
type Task struct {
	SessionID       string
	ID              string
	Payload         []byte
	Attempt         int32
	SharedData      []byte
	SharedDataLevel int64
}

// Handler executes a task and returns its result payload. A non-nil error
// fails this attempt: the server retries the task or dead-letters it after
// its last attempt. A panic is recovered and reported as a failure. ctx is
// cancelled when the task's result can no longer be delivered (the stream
// broke), when the drain deadline passes, and when the server stops the
// task: it was cancelled, its lease ran out (see ExtendLease), or the
// worker was preempted with an abort. A stopped task's result is not sent.
type Handler func(ctx context.Context, t Task) ([]byte, error)

type worker struct {
	opts Options
	h    Handler
	pool *conn.Pool
	log  *slog.Logger
	// shared holds the shared-data levels fetched for tasks.
	shared *sharedStore
	sem    chan struct{} // task slots, shared by every binding

	// base is the parent of every binding's context; cancelled when the
	// drain deadline passes.
	base       context.Context
	cancelBase context.CancelFunc

	statusKick chan struct{}
	bindWG     sync.WaitGroup
	// watch guards the current WorkerUpdate stream (nil when off): every
	// message received from the node, on any stream, is reported to it.
	watch atomic.Pointer[conn.Watch]

	mu       sync.Mutex
	bindings map[string]*binding
	last     string // session of the latest binding, for status reports
	draining bool
	// aborting stops bindings from starting while abortAll waits for the
	// ones of a broken WorkerUpdate stream to end.
	aborting bool
}

// Run executes tasks until ctx ends, reconnecting as often as needed. When
// ctx ends it stops taking tasks, lets running ones finish (at most
// DrainTimeout), sends their results and returns nil. It returns an error
// only for invalid options or when the cluster refuses the worker for good
// (Unauthenticated, PermissionDenied, InvalidArgument, Unimplemented).
func Run(ctx context.Context, opts Options, h Handler) error {
	if h == nil {
		return status.Error(codes.InvalidArgument, "gridd worker: nil handler")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return err
	}
	pool, err := conn.New(conn.Config{Addrs: opts.Addrs, TLS: opts.TLS, APIKey: opts.APIKey,
		Logger: opts.Logger, DialOptions: opts.DialOptions})
	if err != nil {
		return err
	}
	defer func() { _ = pool.Close() }()
	w := &worker{
		opts:       opts,
		h:          h,
		pool:       pool,
		log:        opts.Logger.With("component", "sdk.worker", "worker", opts.WorkerID),
		sem:        make(chan struct{}, opts.Concurrency),
		statusKick: make(chan struct{}, 1),
		bindings:   make(map[string]*binding),
	}
	w.base, w.cancelBase = context.WithCancel(context.Background())
	defer w.cancelBase()
	if w.shared, err = newSharedStore(w); err != nil {
		return err
	}
	defer func() {
		w.cancelBase() // ends fetches nobody waits for any more
		w.shared.close()
	}()
	return w.loop(ctx)
}

func (w *worker) loop(ctx context.Context) error {
	bo := conn.NewBackoff(w.opts.MinBackoff, w.opts.MaxBackoff)
	for {
		if ctx.Err() != nil {
			return nil
		}
		cc, t, err := w.pool.LeaderTarget(ctx)
		if err == nil {
			start := time.Now()
			err = w.register(ctx, cc, t)
			if ctx.Err() != nil {
				return nil
			}
			w.pool.Forget(t.Addr)
			if time.Since(start) >= bo.Max {
				bo.Reset()
			}
		}
		if refused(err) {
			return fmt.Errorf("gridd worker: refused by the cluster: %w", err)
		}
		d := bo.After(err)
		level := slog.LevelInfo
		if errors.Is(err, conn.ErrNoLeader) {
			level = slog.LevelDebug // polling while an election runs
		}
		w.log.Log(ctx, level, "worker stream broke; reconnecting", "in", d, "err", err)
		if conn.Wait(ctx, d) != nil {
			return nil
		}
	}
}

// refused reports errors that reconnecting cannot fix.
func refused(err error) bool {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument, codes.Unimplemented:
		return true
	}
	return false
}

func (w *worker) outgoing(ctx context.Context, kv ...string) context.Context {
	kv = append(kv, conn.MDWorkerID, w.opts.WorkerID)
	if w.opts.Node != "" {
		kv = append(kv, conn.MDNode, w.opts.Node)
	}
	if w.opts.Pod != "" {
		kv = append(kv, conn.MDPod, w.opts.Pod)
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// register holds one WorkerUpdate stream: it reports status and follows
// instructions until the stream breaks, or until ctx ends and the drain is
// over. Bindings made on this stream end with it: the leader that made them
// is gone or has forgotten this worker.
func (w *worker) register(ctx context.Context, cc *grpc.ClientConn, t conn.Target) error {
	uctx, cancelCause := context.WithCancelCause(w.base)
	cancel := func() { cancelCause(nil) }
	defer cancel()
	st, err := griddpb.NewQueueClient(cc).WorkerUpdate(w.outgoing(uctx))
	if err != nil {
		return err
	}
	w.log.Info("worker registered", "concurrency", w.opts.Concurrency)
	var sendErr error
	var wg sync.WaitGroup
	if w.opts.LeaderWatch >= 0 {
		watch := w.pool.Watch(t, w.opts.LeaderWatch, w.bound, cancelCause)
		w.watch.Store(watch)
		defer w.watch.Store(nil)
		wg.Go(func() { watch.Run(uctx) })
	}
	wg.Go(func() {
		sendErr = w.heartbeat(uctx, st)
		if sendErr != nil && !errors.Is(sendErr, io.EOF) {
			cancel()
		}
	})
	recvErr := make(chan error, 1)
	wg.Go(func() { recvErr <- w.instructions(uctx, cc, st) })

	select {
	case err = <-recvErr:
		w.abortAll()
	case <-ctx.Done():
		w.drain()
	}
	cancel()
	wg.Wait()
	if status.Code(err) == codes.Canceled && sendErr != nil && !errors.Is(sendErr, io.EOF) {
		err = sendErr
	}
	if cause := context.Cause(uctx); errors.Is(cause, conn.ErrSuperseded) {
		err = cause
	}
	return err
}

// bound reports whether the worker holds a binding: then the node should
// be sending tasks, and its silence is suspect.
func (w *worker) bound() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.bindings) > 0
}

// heard tells the leader watch that the node sent something.
func (w *worker) heard() {
	if watch := w.watch.Load(); watch != nil {
		watch.Heard()
	}
}

func (w *worker) heartbeat(ctx context.Context, st griddpb.Queue_WorkerUpdateClient) error {
	t := time.NewTicker(w.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		if err := st.Send(w.status()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-w.statusKick:
		}
	}
}

func (w *worker) status() *griddpb.WorkerStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := &griddpb.WorkerStatus{WorkerId: w.opts.WorkerID, Node: w.opts.Node, Pod: w.opts.Pod,
		State: griddpb.WorkerState_WORKER_STATE_IDLE, Concurrency: int32(w.opts.Concurrency)}
	switch {
	case w.draining:
		s.State = griddpb.WorkerState_WORKER_STATE_DRAINING
	case len(w.bindings) > 0:
		s.State = griddpb.WorkerState_WORKER_STATE_BOUND
		s.SessionId = w.last
		if _, ok := w.bindings[w.last]; !ok {
			for id := range w.bindings {
				s.SessionId = id
				break
			}
		}
	}
	return s
}

func (w *worker) kickStatus() {
	select {
	case w.statusKick <- struct{}{}:
	default:
	}
}

func (w *worker) instructions(ctx context.Context, cc *grpc.ClientConn, st griddpb.Queue_WorkerUpdateClient) error {
	for {
		in, err := st.Recv()
		if err != nil {
			return err
		}
		w.heard()
		switch in.GetType() {
		case griddpb.InstructionType_INSTRUCTION_TYPE_BIND:
			w.bind(cc, in.GetSessionId())
		case griddpb.InstructionType_INSTRUCTION_TYPE_UNBIND:
			w.unbind(in.GetSessionId(), in.GetAbort())
		default:
			w.log.Warn("unknown instruction ignored", "type", in.GetType())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (w *worker) bind(cc *grpc.ClientConn, session string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.draining || w.aborting || session == "" {
		return
	}
	if b, ok := w.bindings[session]; ok {
		// Bound again while the old binding winds down: start anew after it.
		b.rebind(cc)
		return
	}
	w.startLocked(cc, session)
}

func (w *worker) startLocked(cc *grpc.ClientConn, session string) {
	b := newBinding(w, session)
	w.bindings[session] = b
	w.last = session
	w.bindWG.Go(func() { b.run(cc) })
	w.log.Info("bound", "session", session)
	w.kickStatus()
}

// unbind lets the session's running tasks finish, or with abort (immediate
// preemption) cancels them at once: the server has already put them back to
// pending and ignores their results.
func (w *worker) unbind(session string, abort bool) {
	w.mu.Lock()
	b, ok := w.bindings[session]
	w.mu.Unlock()
	if !ok {
		return
	}
	if abort {
		w.log.Info("unbinding, aborting running tasks", "session", session)
		b.abort(false)
		return
	}
	w.log.Info("unbinding", "session", session)
	b.halt(false)
}

// unregister removes a finished binding, and starts its successor when the
// session was bound again meanwhile.
func (w *worker) unregister(b *binding) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.bindings[b.session] == b {
		delete(w.bindings, b.session)
	}
	if cc := b.rebindConn(); cc != nil && !w.draining && !w.aborting {
		w.startLocked(cc, b.session)
		return
	}
	w.kickStatus()
}

func (w *worker) snapshot() []*binding {
	w.mu.Lock()
	defer w.mu.Unlock()
	bs := make([]*binding, 0, len(w.bindings))
	for _, b := range w.bindings {
		bs = append(bs, b)
	}
	return bs
}

// abortAll ends every binding at once, dropping results still running.
func (w *worker) abortAll() {
	w.mu.Lock()
	w.aborting = true
	w.mu.Unlock()
	for _, b := range w.snapshot() {
		b.abort(true)
	}
	w.bindWG.Wait()
	w.mu.Lock()
	w.aborting = false
	w.mu.Unlock()
}

// drain stops taking tasks, waits for running ones up to DrainTimeout,
// then cancels what is left.
func (w *worker) drain() {
	w.mu.Lock()
	w.draining = true
	w.mu.Unlock()
	w.kickStatus()
	w.log.Info("draining", "timeout", w.opts.DrainTimeout)
	for _, b := range w.snapshot() {
		b.halt(true)
	}
	if !waitTimeout(&w.bindWG, w.opts.DrainTimeout) {
		w.log.Warn("drain deadline passed; cancelling running tasks")
		w.cancelBase()
		w.bindWG.Wait()
	}
}

// waitTimeout waits for wg up to d and reports whether it finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
