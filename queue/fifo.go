package queue

// FIFO is a first-in first-out queue on a ring buffer whose capacity is a
// power of two. Push and Pop are amortised O(1); the ring doubles when full
// and halves when a quarter full, so memory follows the queue's size.
//
// The zero value is an empty queue ready to use.
type FIFO[T any] struct {
	buf  []T // len(buf) is 0 or a power of two
	head int // index of the first element
	n    int // number of elements
}

const minFIFOCap = 16

// Len returns the number of elements.
func (q *FIFO[T]) Len() int { return q.n }

// Push appends v at the back.
func (q *FIFO[T]) Push(v T) {
	if q.n == len(q.buf) {
		q.resize(max(minFIFOCap, 2*len(q.buf)))
	}
	q.buf[(q.head+q.n)&(len(q.buf)-1)] = v
	q.n++
}

// Peek returns the front element without removing it.
func (q *FIFO[T]) Peek() (T, bool) {
	if q.n == 0 {
		var zero T
		return zero, false
	}
	return q.buf[q.head], true
}

// Pop removes and returns the front element. ok is false when the queue is
// empty.
func (q *FIFO[T]) Pop() (T, bool) {
	var zero T
	if q.n == 0 {
		return zero, false
	}
	v := q.buf[q.head]
	// Clear the slot so the ring does not keep the value alive.
	q.buf[q.head] = zero
	q.head = (q.head + 1) & (len(q.buf) - 1)
	q.n--
	if len(q.buf) > minFIFOCap && q.n <= len(q.buf)/4 {
		q.resize(len(q.buf) / 2)
	}
	return v, true
}

// At returns the i-th element from the front (0 is the front). It panics
// if i is out of range, like a slice index.
func (q *FIFO[T]) At(i int) T {
	if i < 0 || i >= q.n {
		panic("queue: FIFO index out of range")
	}
	return q.buf[(q.head+i)&(len(q.buf)-1)]
}

// Reset empties the queue and releases its memory.
func (q *FIFO[T]) Reset() { *q = FIFO[T]{} }

// resize moves the elements to a new ring of capacity c (a power of two,
// at least q.n), front first.
func (q *FIFO[T]) resize(c int) {
	nb := make([]T, c)
	if q.n > 0 {
		end := q.head + q.n
		if end <= len(q.buf) {
			copy(nb, q.buf[q.head:end])
		} else {
			k := copy(nb, q.buf[q.head:])
			copy(nb[k:], q.buf[:end-len(q.buf)])
		}
	}
	q.buf = nb
	q.head = 0
}
