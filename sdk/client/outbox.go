package client

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/rpc/griddpb"
)

// outbox keeps every submitted batch until its SubmitAck arrives. A batch
// whose ack is lost with a broken stream is sent again, with the same task
// ids, on the next stream: the server acknowledges tasks it already has as
// duplicates, so the resend is safe whether or not the first send committed.
type outbox struct {
	kick chan struct{} // cap 1: unsent batches are waiting

	mu      sync.Mutex
	nextSeq uint64
	pending map[uint64]*pendingBatch
	unsent  []*pendingBatch
	err     error // once set, the outbox takes no more batches
	// waits are the resends of batches refused for a full session,
	// stopped by fail.
	waits map[uint64]*time.Timer
}

type pendingBatch struct {
	seq   uint64
	batch *griddpb.Batch
	done  chan submitOutcome // cap 1, written once
	sends int
	// notify, when set, is called once with the outcome too, outside the
	// outbox's lock: the Add path learns of acks without a goroutine per
	// batch waiting on done.
	notify func(*pendingBatch, submitOutcome)
	// counted are the ids this batch added to the in-flight count (see
	// flow): released if the batch is rejected or abandoned.
	counted []string
	// full counts the times the server answered ResourceExhausted (the
	// session's pending limit), for the backoff of the next resend.
	full int
}

type submitOutcome struct {
	ack *griddpb.SubmitAck
	err error
}

func newOutbox() *outbox {
	return &outbox{kick: make(chan struct{}, 1), pending: make(map[uint64]*pendingBatch),
		waits: make(map[uint64]*time.Timer)}
}

// add numbers the batch, keeps it and queues it for sending.
func (o *outbox) add(b *griddpb.Batch) (*pendingBatch, error) { return o.addWith(b, nil, nil) }

// addWith is add recording the ids the batch counts in flight and a
// function called with its outcome.
func (o *outbox) addWith(b *griddpb.Batch, counted []string,
	notify func(*pendingBatch, submitOutcome)) (*pendingBatch, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return nil, o.err
	}
	o.nextSeq++
	b.Seq = o.nextSeq
	p := &pendingBatch{seq: b.Seq, batch: b, done: make(chan submitOutcome, 1), notify: notify,
		counted: counted}
	o.pending[p.seq] = p
	o.unsent = append(o.unsent, p)
	kick(o.kick)
	return p, nil
}

// takeUnsent returns the batches to send now, oldest first.
func (o *outbox) takeUnsent() []*pendingBatch {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := o.unsent[:0:0]
	for _, p := range o.unsent {
		if o.pending[p.seq] == p { // skip batches dropped meanwhile
			p.sends++
			out = append(out, p)
		}
	}
	o.unsent = nil
	return out
}

// resendAll queues every batch still waiting for its ack, in order, for a
// new stream, and returns how many were already sent on an earlier one.
func (o *outbox) resendAll() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.unsent = o.unsent[:0]
	resent := 0
	for seq, p := range o.pending {
		if _, waiting := o.waits[seq]; waiting {
			continue // its timer queues it
		}
		o.unsent = append(o.unsent, p)
		if p.sends > 0 {
			resent++
		}
	}
	slices.SortFunc(o.unsent, func(a, b *pendingBatch) int { return cmp.Compare(a.seq, b.seq) })
	if len(o.unsent) > 0 {
		kick(o.kick)
	}
	return resent
}

// complete settles the batch an ack names. A second ack for the same seq
// (the answer to a resend) finds nothing and is ignored.
func (o *outbox) complete(a *griddpb.SubmitAck) bool { return o.completeBatch(a, nil) != nil }

// completeBatch is complete returning the settled batch, or nil.
func (o *outbox) completeBatch(a *griddpb.SubmitAck, record func(*pendingBatch)) *pendingBatch {
	if codes.Code(a.GetCode()) == codes.ResourceExhausted && o.resendLater(a.GetSeq()) {
		return nil
	}
	o.mu.Lock()
	p, ok := o.pending[a.GetSeq()]
	delete(o.pending, a.GetSeq())
	o.mu.Unlock()
	if !ok {
		return nil
	}
	out := submitOutcome{ack: a}
	if c := codes.Code(a.GetCode()); c != codes.OK {
		// Rejected: nothing was written, and sending it again would be
		// rejected again.
		out.err = status.Error(c, a.GetMessage())
	}
	// Counters first: whoever waits on the batch (Submit, Flush) must find
	// them updated when it wakes.
	if record != nil {
		record(p)
	}
	p.settle(out)
	return p
}

// Backoff of a batch refused because its session has too many pending
// tasks: doubling from fullBackoffMin, capped at fullBackoffMax, so that a
// client waits about as long as workers take to free room.
const (
	fullBackoffMin = 20 * time.Millisecond
	fullBackoffMax = 2 * time.Second
)

// resendLater keeps the batch seq, refused because its session is full,
// and queues it again after a backoff: the server wrote nothing, and the
// same task ids keep the resend exactly-once. It reports false when the
// batch is no longer waiting (the ack of an older send).
func (o *outbox) resendLater(seq uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	p, ok := o.pending[seq]
	if !ok {
		return false
	}
	if _, waiting := o.waits[seq]; waiting {
		return true
	}
	// The refused send wrote nothing: it must not count as a first send
	// whose duplicates are this batch's own (see Session.record).
	p.sends--
	p.full++
	d := fullBackoffMin << min(p.full-1, 10)
	d = min(d, fullBackoffMax)
	d = d/2 + rand.N(d/2+1) // jitter: sessions refused together spread out
	o.waits[seq] = time.AfterFunc(d, func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		delete(o.waits, seq)
		if o.err == nil && o.pending[seq] == p {
			o.unsent = append(o.unsent, p)
			kick(o.kick)
		}
	})
	return true
}

func (p *pendingBatch) settle(out submitOutcome) {
	p.done <- out
	if p.notify != nil {
		p.notify(p, out)
	}
}

// drop forgets a batch whose submitter stopped waiting.
func (o *outbox) drop(p *pendingBatch) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pending[p.seq] == p {
		delete(o.pending, p.seq)
	}
}

// fail settles every pending batch with err and refuses new ones.
func (o *outbox) fail(err error) {
	o.mu.Lock()
	if o.err == nil {
		o.err = err
	}
	for seq, t := range o.waits {
		t.Stop()
		delete(o.waits, seq)
	}
	failed := make([]*pendingBatch, 0, len(o.pending))
	for seq, p := range o.pending {
		failed = append(failed, p)
		delete(o.pending, seq)
	}
	o.unsent = nil
	o.mu.Unlock()
	for _, p := range failed {
		p.settle(submitOutcome{err: err})
	}
}

// len is the number of batches waiting for their ack.
func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.pending)
}
