package dispatch

import (
	"context"
	"time"

	"github.com/gridd/gridd/fsm"
)

// Retry backoff. A failed task comes back from the state machine with the
// not-before time the leader drew for it (it is replicated, so a new leader
// honours it too). Until then it waits in the dispatcher's delay heap, not
// in its session's ready queue, and does not count as ready for placement.
// One timer, re-armed to the earliest delay or lease deadline, moves due
// tasks to the ready queue: nothing polls.

// timed is a heap entry due at a time (unix nanoseconds).
type timed[T any] struct {
	at int64
	v  T
}

// timerHeap is a min-heap on at. Entries are never removed early: each
// one is checked against the task's current state when it comes due, so
// that an extension or a requeue only has to push a new entry.
type timerHeap[T any] []timed[T]

func (h *timerHeap[T]) push(at int64, v T) {
	*h = append(*h, timed[T]{at, v})
	e := *h
	for i := len(e) - 1; i > 0; {
		p := (i - 1) / 2
		if e[p].at <= e[i].at {
			break
		}
		e[p], e[i] = e[i], e[p]
		i = p
	}
}

// due pops the first entry if it is due at now.
func (h *timerHeap[T]) due(now int64) (T, bool) {
	e := *h
	if len(e) == 0 || e[0].at > now {
		var zero T
		return zero, false
	}
	v := e[0].v
	last := len(e) - 1
	e[0] = e[last]
	e[last] = timed[T]{}
	e = e[:last]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < len(e) && e[l].at < e[m].at {
			m = l
		}
		if r := l + 1; r < len(e) && e[r].at < e[m].at {
			m = r
		}
		if m == i {
			break
		}
		e[i], e[m] = e[m], e[i]
		i = m
	}
	*h = e
	return v, true
}

// next returns when the first entry is due.
func (h timerHeap[T]) next() (int64, bool) {
	if len(h) == 0 {
		return 0, false
	}
	return h[0].at, true
}

type delayEntry struct {
	s         *session
	id        string
	notBefore int64 // unix ms, to recognise a stale entry
}

// delayLocked parks t until its not-before time.
func (d *Dispatcher) delayLocked(s *session, ts *taskState) {
	ts.delayed = true
	s.delayed++
	at := time.UnixMilli(ts.task.NotBeforeUnixMs).UnixNano()
	d.delays.push(at, delayEntry{s: s, id: ts.task.ID, notBefore: ts.task.NotBeforeUnixMs})
	d.armLocked(at)
}

// undelayLocked takes ts out of the delay state; its heap entry goes stale.
func (s *session) undelay(ts *taskState) {
	if ts.delayed {
		ts.delayed = false
		s.delayed--
	}
}

// armLocked makes the timer goroutine wake by at.
func (d *Dispatcher) armLocked(at int64) {
	if d.timerAt == 0 || at < d.timerAt {
		d.timerAt = at
		select {
		case d.timerWake <- struct{}{}:
		default:
		}
	}
}

// promoteDueLocked moves the tasks whose backoff is over to their ready
// queues and reports whether any moved.
func (d *Dispatcher) promoteDueLocked(now time.Time) bool {
	moved := false
	for {
		e, ok := d.delays.due(now.UnixNano())
		if !ok {
			return moved
		}
		s := e.s
		if d.sessions[s.id] != s {
			continue // session closed or forgotten: its tasks went with it
		}
		ts := s.tasks[e.id]
		if ts == nil || !ts.delayed || ts.task.NotBeforeUnixMs != e.notBefore {
			continue
		}
		s.undelay(ts)
		d.queueLocked(s, ts)
		moved = true
	}
}

// timers runs the delay and lease deadlines: it sleeps until the earliest
// one, handles what is due, and sleeps again. armLocked wakes it early
// when an earlier deadline appears.
func (d *Dispatcher) timers(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		now := time.Now()
		d.mu.Lock()
		moved := d.promoteDueLocked(now)
		d.expireLeasesLocked(now)
		next, ok := d.delays.next()
		if at, lok := d.leases.next(); lok && (!ok || at < next) {
			next, ok = at, true
		}
		d.timerAt = 0
		if ok {
			d.timerAt = next
		}
		d.mu.Unlock()
		if moved {
			d.poke() // placement: the session has ready tasks again
		}
		if ok {
			t.Reset(time.Until(time.Unix(0, next)))
		} else {
			t.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.timerWake:
		}
	}
}

// notBeforeFuture reports whether t must still wait for its backoff.
func notBeforeFuture(t fsm.Task, now time.Time) bool {
	return t.NotBeforeUnixMs > 0 && t.NotBeforeUnixMs > now.UnixMilli()
}
