package client

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/internal/conn"
)

// ErrDetached is returned (wrapped) by a Session's Submit after Close or
// Detach, and to Submits still waiting when that happens. Its code is
// Canceled.
var ErrDetached = status.Error(codes.Canceled, "gridd: session detached")

// drainTimeout bounds how long Detach waits for the streams to flush their
// last acknowledgements and end.
const drainTimeout = 2 * time.Second

// Task is one unit of work. ID is chosen by the application, unique within
// the session (1..256 bytes): results and dead letters carry it back, and
// submitting an ID the session already has is a harmless duplicate.
type Task struct {
	ID       string
	Payload  []byte
	Priority int32
}

// Result is the outcome of a task that succeeded. Attempt is the attempt
// that produced it (1 unless a worker failed or died before).
type Result struct {
	TaskID  string
	Payload []byte
	Attempt int32
}

// DeadLetter is a task that failed every attempt; Errors holds each
// attempt's error, oldest first.
type DeadLetter struct {
	TaskID   string
	Payload  []byte
	Errors   []string
	Attempts int32
}

// SubmitResult counts the tasks of one Submit. Duplicates are ids the
// session already had; after a failover they may include tasks of this very
// Submit whose first send was committed before its acknowledgement was lost.
type SubmitResult struct {
	Accepted   int
	Duplicates int
}

// Stats are a Session's counters since it was attached.
type Stats struct {
	TasksAccepted        uint64 // tasks the server acknowledged as new
	TasksDuplicate       uint64 // tasks the server already had
	BatchesAcked         uint64 // batches acknowledged durable or rejected
	BatchesResent        uint64 // batches sent again after a reconnection
	BatchesPending       int    // batches waiting for their acknowledgement now
	ResultsDelivered     uint64 // results handed to the application
	ResultRepeats        uint64 // results the server sent again, dropped here
	DeadLettersDelivered uint64
	DeadLetterRepeats    uint64
	Reconnects           uint64 // streams reopened after one broke
}

// Session is an attached session: it submits tasks and streams results and
// dead letters. It is safe for concurrent use.
type Session struct {
	id   string
	c    *Client
	log  *slog.Logger
	opts sessionOptions

	out     *outbox
	results *inbox[Result]
	dead    *inbox[DeadLetter]

	ctx           context.Context // the streams' lifetime
	cancel        context.CancelFunc
	deliverCtx    context.Context // the channels' lifetime
	deliverCancel context.CancelFunc
	draining      chan struct{} // closed by Detach: flush acks, end streams
	streams       sync.WaitGroup
	deliverers    sync.WaitGroup
	stopOnce      sync.Once

	acked, accepted, duplicates, resent, reconnects atomic.Uint64
}

func newSession(c *Client, id string, o sessionOptions) *Session {
	s := &Session{
		id:       id,
		c:        c,
		log:      c.log.With("session", id),
		opts:     o,
		out:      newOutbox(),
		results:  newInbox[Result](o.bufferSize),
		dead:     newInbox[DeadLetter](o.bufferSize),
		draining: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.deliverCtx, s.deliverCancel = context.WithCancel(context.Background())
	return s
}

func (s *Session) start() {
	s.deliverers.Go(func() { s.results.deliver(s.deliverCtx) })
	s.deliverers.Go(func() { s.dead.deliver(s.deliverCtx) })
	s.streams.Go(func() { s.keepStream(resultsStream{s}) })
	s.streams.Go(func() { s.keepStream(deadLetterStream{s}) })
}

// ID returns the session id.
func (s *Session) ID() string { return s.id }

// Results delivers each task's result once. It is closed after Close or
// Detach, or when the session ends on the server (NotFound, closed).
func (s *Session) Results() <-chan Result { return s.results.out }

// DeadLetters delivers each dead letter once; closed like Results.
func (s *Session) DeadLetters() <-chan DeadLetter { return s.dead.out }

// Stats returns the session's counters.
func (s *Session) Stats() Stats {
	return Stats{
		TasksAccepted:        s.accepted.Load(),
		TasksDuplicate:       s.duplicates.Load(),
		BatchesAcked:         s.acked.Load(),
		BatchesResent:        s.resent.Load(),
		BatchesPending:       s.out.len(),
		ResultsDelivered:     s.results.handed.Load(),
		ResultRepeats:        s.results.repeats.Load(),
		DeadLettersDelivered: s.dead.handed.Load(),
		DeadLetterRepeats:    s.dead.repeats.Load(),
		Reconnects:           s.reconnects.Load(),
	}
}

// Submit sends tasks and returns once they are durable: committed to a
// majority of the cluster, so they survive the crash of any minority of
// nodes. Large submissions are split into several batches (WithMaxBatch),
// all in flight at once on the session's stream; concurrent Submits are
// pipelined the same way.
//
// If the stream breaks, unacknowledged batches are sent again on the next
// one with the same task ids, which the server deduplicates. A batch the
// server rejects changed nothing; Submit returns the server's code and
// message (status.Code(err)) and does not resend it. When ctx ends first,
// the outcome is unknown: resubmitting the same task ids is safe.
func (s *Session) Submit(ctx context.Context, tasks []Task) (SubmitResult, error) {
	var res SubmitResult
	if len(tasks) == 0 {
		return res, nil
	}
	var pending []*pendingBatch
	for _, chunk := range splitTasks(tasks, s.opts.maxBatch, s.opts.maxBytes) {
		p, err := s.out.add(s.batchOf(chunk))
		if err != nil {
			for _, q := range pending {
				s.out.drop(q)
			}
			return res, fmt.Errorf("gridd: submit to session %s: %w", s.id, err)
		}
		pending = append(pending, p)
	}
	var firstErr error
	for i, p := range pending {
		select {
		case o := <-p.done:
			if o.err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("gridd: submit to session %s: %w", s.id, o.err)
				}
				continue
			}
			res.Accepted += int(o.ack.GetAccepted())
			res.Duplicates += int(o.ack.GetDuplicates())
		case <-ctx.Done():
			for _, q := range pending[i:] {
				s.out.drop(q)
			}
			return res, &conn.CtxError{Op: "submit to session " + s.id, Ctx: ctx.Err()}
		}
	}
	return res, firstErr
}

func (s *Session) batchOf(tasks []Task) *griddpb.Batch {
	msgs := make([]*griddpb.Message, len(tasks))
	for i, t := range tasks {
		msgs[i] = &griddpb.Message{Id: t.ID, Payload: t.Payload, Priority: t.Priority}
	}
	return &griddpb.Batch{SessionId: s.id, Messages: msgs}
}

// settle records a SubmitAck.
func (s *Session) settle(a *griddpb.SubmitAck) {
	if !s.out.complete(a) {
		return
	}
	s.acked.Add(1)
	if a.GetCode() == 0 {
		s.accepted.Add(uint64(a.GetAccepted()))
		s.duplicates.Add(uint64(a.GetDuplicates()))
	}
}

// Close closes the session on the server, then detaches. The session is
// detached even when closing it on the server failed; use
// Client.CloseSession to retry that.
func (s *Session) Close(ctx context.Context) error {
	_, err := s.c.CloseSession(ctx, s.id)
	derr := s.Detach()
	if err != nil {
		return err
	}
	return derr
}

// Detach stops the streams and leaves the session open on the server, for
// another process (or a later OpenSession) to attach to. Acknowledgements of
// the results already delivered are flushed first; results not yet
// delivered are not acknowledged, so the server keeps them (see
// WithResultBuffer for what "delivered" means). Submits still waiting fail
// with ErrDetached. Results and DeadLetters are closed. It returns
// ErrDetached if the session was already stopped.
func (s *Session) Detach() error {
	err := ErrDetached
	s.stopOnce.Do(func() {
		err = nil
		s.deliverCancel()
		s.deliverers.Wait()
		s.out.fail(ErrDetached)
		close(s.draining)
		if !waitTimeout(&s.streams, drainTimeout) {
			s.log.Debug("streams did not end cleanly; cancelling them")
		}
		s.cancel()
		s.streams.Wait()
		s.c.forget(s)
	})
	return err
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
