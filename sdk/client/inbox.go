package client

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Ack batching: acknowledgements go back in groups, so a stream of results
// costs the server one replicated "drop" entry per group, not per result.
const (
	ackFlushCount = 100
	ackFlushDelay = 5 * time.Millisecond
)

// inbox turns the at-least-once stream of results (or of dead letters) into
// an exactly-once channel for the application, and collects the ids to
// acknowledge. The server repeats every unacknowledged result after a
// reconnection or a leader change; the inbox remembers every id it has seen
// for the session's lifetime and drops the repeats.
//
// Items wait in an unbounded queue rather than on the stream: an application
// that submits everything before reading results must not stall the stream
// that carries its submit acknowledgements.
type inbox[T any] struct {
	out     chan T
	ackKick chan struct{} // cap 1: the stream's sender should flush acks
	wake    chan struct{} // cap 1: the deliverer has work

	mu         sync.Mutex
	delivered  map[string]bool // id -> handed to the application (false: queued)
	queue      []inboxItem[T]
	ended      bool // no more input will come; close out once queue drains
	acks       []string
	timerArmed bool

	handed      atomic.Uint64
	repeats     atomic.Uint64
	lastAckSent atomic.Int64 // unix nanoseconds

	// onHanded, when set before deliver starts, is called with the id of
	// each item handed to the application (it frees an in-flight slot).
	onHanded func(id string)
}

type inboxItem[T any] struct {
	id string
	v  T
}

func newInbox[T any](buffer int) *inbox[T] {
	return &inbox[T]{
		out:       make(chan T, buffer),
		ackKick:   make(chan struct{}, 1),
		wake:      make(chan struct{}, 1),
		delivered: make(map[string]bool),
	}
}

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// push queues v unless id was seen before; it reports whether v is new.
// A repeat of an item already handed over means the server did not get the
// acknowledgement (sent on a stream that broke), so it is acknowledged again.
func (in *inbox[T]) push(id string, v T) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if done, seen := in.delivered[id]; seen && !plantNoDedup {
		in.repeats.Add(1)
		if done {
			in.addAckLocked(id)
		}
		return false
	}
	in.delivered[id] = false
	in.queue = append(in.queue, inboxItem[T]{id: id, v: v})
	kick(in.wake)
	return true
}

// end says no more items will be pushed: the deliverer closes the channel
// once the queue is empty.
func (in *inbox[T]) end() {
	in.mu.Lock()
	in.ended = true
	in.mu.Unlock()
	kick(in.wake)
}

// deliver hands queued items to the application, in arrival order, and
// queues an ack for each one handed over. It closes the channel when it
// returns: on ctx's end, or after end() once the queue is empty.
func (in *inbox[T]) deliver(ctx context.Context) {
	defer close(in.out)
	for {
		in.mu.Lock()
		if len(in.queue) == 0 {
			ended := in.ended
			in.mu.Unlock()
			if ended {
				return
			}
			select {
			case <-in.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		it := in.queue[0]
		in.queue[0] = inboxItem[T]{}
		in.queue = in.queue[1:]
		in.mu.Unlock()
		select {
		case in.out <- it.v:
		case <-ctx.Done():
			// Not handed over, so not acknowledged: the server keeps it and
			// sends it again to whoever attaches to the session next.
			return
		}
		in.handed.Add(1)
		in.mu.Lock()
		in.delivered[it.id] = true
		in.addAckLocked(it.id)
		in.mu.Unlock()
		if in.onHanded != nil {
			in.onHanded(it.id)
		}
	}
}

// seen reports whether the item id arrived, handed over or queued.
func (in *inbox[T]) seen(id string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	_, ok := in.delivered[id]
	return ok
}

// handedOver reports whether the item id was handed to the application.
func (in *inbox[T]) handedOver(id string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.delivered[id]
}

// addAckLocked queues an ack and asks for a flush when a group is full, or
// arms a timer that asks for one shortly.
func (in *inbox[T]) addAckLocked(id string) {
	in.acks = append(in.acks, id)
	if len(in.acks) >= ackFlushCount {
		kick(in.ackKick)
		return
	}
	if !in.timerArmed {
		in.timerArmed = true
		time.AfterFunc(ackFlushDelay, func() {
			in.mu.Lock()
			in.timerArmed = false
			in.mu.Unlock()
			kick(in.ackKick)
		})
	}
}

// takeAcks removes and returns the pending acks.
func (in *inbox[T]) takeAcks() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	ids := in.acks
	in.acks = nil
	return ids
}

// restoreAcks puts back acks whose send failed, so the next stream sends
// them first.
func (in *inbox[T]) restoreAcks(ids []string) {
	if len(ids) == 0 {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.acks = append(ids, in.acks...)
}

// pendingAcks is the number of acks not yet taken by a sender.
func (in *inbox[T]) pendingAcks() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.acks)
}
