// Package queue holds the in-memory queue structures the scheduler builds
// on: a priority queue that is FIFO within a priority, and a plain FIFO.
// Neither is safe for concurrent use; callers hold their own lock. The
// package does no I/O.
package queue

// Item is an element of a Priority queue with the keys it is ordered by.
type Item[T any] struct {
	Value    T
	Priority int32
	Seq      uint64
}

// Priority is a binary heap: the highest Priority comes out first, and
// among equal priorities the lowest Seq, so that a caller-supplied
// acceptance counter gives FIFO order within a priority. Push and Pop are
// O(log n); memory is released as the queue shrinks.
//
// The zero value is an empty queue ready to use.
type Priority[T any] struct {
	items []Item[T]
}

// minShrinkCap keeps small queues from reallocating on every few pops.
const minShrinkCap = 64

// Len returns the number of elements.
func (q *Priority[T]) Len() int { return len(q.items) }

// Push adds v with the given priority and sequence number.
func (q *Priority[T]) Push(v T, priority int32, seq uint64) {
	q.items = append(q.items, Item[T]{Value: v, Priority: priority, Seq: seq})
	q.up(len(q.items) - 1)
}

// Peek returns the element Pop would return, without removing it.
func (q *Priority[T]) Peek() (T, bool) {
	it, ok := q.PeekItem()
	return it.Value, ok
}

// PeekItem is Peek with the element's priority and sequence number.
func (q *Priority[T]) PeekItem() (Item[T], bool) {
	if len(q.items) == 0 {
		return Item[T]{}, false
	}
	return q.items[0], true
}

// Pop removes and returns the element with the highest priority (lowest
// Seq among equals). ok is false when the queue is empty.
func (q *Priority[T]) Pop() (T, bool) {
	it, ok := q.PopItem()
	return it.Value, ok
}

// PopItem is Pop with the element's priority and sequence number.
func (q *Priority[T]) PopItem() (Item[T], bool) {
	n := len(q.items)
	if n == 0 {
		return Item[T]{}, false
	}
	top := q.items[0]
	last := n - 1
	q.items[0] = q.items[last]
	// Clear the vacated slot so the backing array does not keep the value
	// (and whatever it points to) alive.
	q.items[last] = Item[T]{}
	q.items = q.items[:last]
	if last > 0 {
		q.down(0)
	}
	q.shrink()
	return top, true
}

// Reset empties the queue and releases its memory.
func (q *Priority[T]) Reset() { q.items = nil }

// before reports whether a comes out before b.
func before[T any](a, b *Item[T]) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	return a.Seq < b.Seq
}

func (q *Priority[T]) up(i int) {
	items := q.items
	for i > 0 {
		parent := (i - 1) / 2
		if !before(&items[i], &items[parent]) {
			return
		}
		items[i], items[parent] = items[parent], items[i]
		i = parent
	}
}

func (q *Priority[T]) down(i int) {
	items := q.items
	n := len(items)
	for {
		best := i
		if l := 2*i + 1; l < n && before(&items[l], &items[best]) {
			best = l
		}
		if r := 2*i + 2; r < n && before(&items[r], &items[best]) {
			best = r
		}
		if best == i {
			return
		}
		items[i], items[best] = items[best], items[i]
		i = best
	}
}

// shrink halves the backing array once it is a quarter full, so a queue
// that once held a million elements does not pin that memory forever; the
// quarter threshold keeps push/pop around the boundary amortised O(1).
func (q *Priority[T]) shrink() {
	c := cap(q.items)
	if c <= minShrinkCap || len(q.items) > c/4 {
		return
	}
	smaller := make([]Item[T], len(q.items), c/2)
	copy(smaller, q.items)
	q.items = smaller
}
