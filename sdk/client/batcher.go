package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gridd/gridd/sdk/internal/conn"
)

// batcher is Session.Add's automatic batching. Tasks wait in buf until a
// batch is full (WithMaxBatch), the oldest waited the linger (WithLinger),
// Flush is called, or, in adaptive mode, nothing of Add's is in flight.
//
// The trade-off: a batch is one Raft entry and one fsync for all its tasks,
// so fuller batches mean more tasks per second, but a task waiting for
// company is latency. Adaptive mode waits only while the cluster is busy
// with an earlier batch anyway, which is when waiting costs nothing.
type batcher struct {
	s        *Session
	linger   time.Duration // < 0: no time limit
	adaptive bool

	mu          sync.Mutex
	buf         []Task
	bufCounted  []string // ids of buf added to the in-flight count
	bufBytes    int
	timer       *time.Timer
	timerGen    uint64 // a timer firing for an older generation does nothing
	lastNum     uint64 // numbers Add's batches, from 1
	outstanding map[uint64]struct{}
	changed     chan struct{} // closed (and replaced) when outstanding shrinks
	errs        []error       // failed batches not yet reported by Flush
	closed      error

	sent atomic.Uint64
}

func newBatcher(s *Session) *batcher {
	return &batcher{s: s, linger: s.opts.linger, adaptive: s.opts.adaptive,
		outstanding: make(map[uint64]struct{}), changed: make(chan struct{})}
}

// NewTaskID returns a new task id: a ULID, unique and sortable by creation
// time. Submit and Add use it for tasks without an id; call it yourself to
// know a task's id before adding it.
func NewTaskID() string { return newRequestID() }

// Add queues a task for submission and returns without waiting for the
// server: the task is sent in a batch with others (see WithLinger,
// WithAdaptiveBatching, WithMaxBatch) on the session's stream. A task with
// an empty ID gets a NewTaskID; its result carries it.
//
// Add waits only while the in-flight bound is reached (WithMaxInflightTasks),
// and returns the context's error if ctx ends first, or ErrDetached (wrapped)
// once the session is detached. A batch the server rejects is reported by
// the next Flush; call Flush to know that everything added is durable.
// Tasks added but not yet sent are dropped by Detach and Close.
func (s *Session) Add(ctx context.Context, t Task) error {
	b := s.batch
	if t.ID == "" {
		t.ID = NewTaskID()
	}
	one := [1]Task{t}
	counted, err := s.flow.acquire(ctx, one[:], s.known)
	if err != nil {
		return opError("add to session "+s.id, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed != nil {
		s.flow.release(counted...)
		return fmt.Errorf("gridd: add to session %s: %w", s.id, b.closed)
	}
	if len(b.buf) > 0 && b.buf[0].shared() != t.shared() {
		b.sendLocked() // a batch carries one shared-data requirement
	}
	b.buf = append(b.buf, t)
	b.bufCounted = append(b.bufCounted, counted...)
	b.bufBytes += len(t.ID) + len(t.Payload)
	switch {
	case len(b.buf) >= s.opts.maxBatch || b.bufBytes >= s.opts.maxBytes:
		b.sendLocked()
	case b.adaptive && len(b.outstanding) == 0:
		b.sendLocked()
	case len(b.buf) == 1 && b.linger > 0:
		gen := b.timerGen
		b.timer = time.AfterFunc(b.linger, func() { b.lingered(gen) })
	}
	return nil
}

// lingered sends the buffer if the timer that fired is still the current one.
func (b *batcher) lingered(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if gen == b.timerGen && len(b.buf) > 0 && b.closed == nil {
		b.sendLocked()
	}
}

// sendLocked hands the buffer to the outbox as one batch.
func (b *batcher) sendLocked() {
	tasks, counted := b.buf, b.bufCounted
	b.buf, b.bufCounted, b.bufBytes = nil, nil, 0
	b.timerGen++
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	b.lastNum++
	num := b.lastNum
	b.outstanding[num] = struct{}{}
	_, err := b.s.out.addWith(b.s.batchOf(tasks), counted, func(_ *pendingBatch, o submitOutcome) {
		b.settled(num, o)
	})
	if err != nil {
		delete(b.outstanding, num)
		b.s.flow.release(counted...)
		b.errs = append(b.errs, fmt.Errorf("gridd: add to session %s: %w", b.s.id, err))
		return
	}
	b.sent.Add(1)
}

// settled records the outcome of batch num; in adaptive mode, the tasks
// that waited for it leave now.
func (b *batcher) settled(num uint64, o submitOutcome) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.outstanding, num)
	close(b.changed)
	b.changed = make(chan struct{})
	if o.err != nil && !errors.Is(o.err, b.closed) {
		b.errs = append(b.errs, fmt.Errorf("gridd: add to session %s: %w", b.s.id, o.err))
	}
	if b.adaptive && len(b.outstanding) == 0 && len(b.buf) > 0 && b.closed == nil {
		b.sendLocked()
	}
}

// Flush sends the tasks Add queued and waits until every task added before
// the call is acknowledged durable (committed to a majority of the
// cluster). It returns the errors of the batches that failed since the last
// Flush (joined; each carries the server's status), or the context's error
// when ctx ends first; the tasks keep going either way.
func (s *Session) Flush(ctx context.Context) error {
	b := s.batch
	b.mu.Lock()
	if len(b.buf) > 0 && b.closed == nil {
		b.sendLocked()
	}
	target := b.lastNum
	for {
		waiting := false
		for num := range b.outstanding {
			if num <= target {
				waiting = true
				break
			}
		}
		if !waiting {
			errs := b.errs
			b.errs = nil
			closed := b.closed
			b.mu.Unlock()
			if closed != nil && len(errs) == 0 {
				return fmt.Errorf("gridd: flush session %s: %w", s.id, closed)
			}
			return errors.Join(errs...)
		}
		changed := b.changed
		b.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return &conn.CtxError{Op: "flush session " + s.id, Ctx: ctx.Err()}
		}
		b.mu.Lock()
	}
}

// close drops the queued tasks and refuses more; batches already sent are
// settled by the outbox.
func (b *batcher) close(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed != nil {
		return
	}
	b.closed = err
	b.timerGen++
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	b.s.flow.release(b.bufCounted...)
	b.buf, b.bufCounted, b.bufBytes = nil, nil, 0
}
