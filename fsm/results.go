package fsm

import (
	"sort"

	"github.com/gridd/gridd/fsm/fsmpb"
)

// compactMin is the number of acknowledged entries a log tolerates before
// it considers compacting; below it a copy costs more than it frees.
const compactMin = 64

type logEntry[V any] struct {
	seq  uint64
	live bool
	v    V
}

// seqLog holds a session's unacknowledged results (or dead letters) in Seq
// order. Entries are only appended with growing Seq, so lookups are binary
// searches. An acknowledged entry is cleared in place (its payload freed)
// and the slice is compacted once the cleared entries outnumber the live
// ones, which keeps reads and acks O(log n) amortised.
type seqLog[V any] struct {
	entries []logEntry[V]
	live    int
}

func (l *seqLog[V]) append(seq uint64, v V) {
	l.entries = append(l.entries, logEntry[V]{seq: seq, live: true, v: v})
	l.live++
}

// lastSeq returns the Seq of the newest entry, live or not, or 0.
func (l *seqLog[V]) lastSeq() uint64 {
	if len(l.entries) == 0 {
		return 0
	}
	return l.entries[len(l.entries)-1].seq
}

// remove drops the live entry with the given Seq and reports whether there
// was one.
func (l *seqLog[V]) remove(seq uint64) bool {
	_, ok := l.take(seq)
	return ok
}

// get returns the live entry with the given Seq.
func (l *seqLog[V]) get(seq uint64) (V, bool) {
	e := l.entries
	i := sort.Search(len(e), func(i int) bool { return e[i].seq >= seq })
	if i == len(e) || e[i].seq != seq || !e[i].live {
		var zero V
		return zero, false
	}
	return e[i].v, true
}

// take drops the live entry with the given Seq and returns its value.
func (l *seqLog[V]) take(seq uint64) (V, bool) {
	e := l.entries
	i := sort.Search(len(e), func(i int) bool { return e[i].seq >= seq })
	if i == len(e) || e[i].seq != seq || !e[i].live {
		var zero V
		return zero, false
	}
	v := e[i].v
	e[i] = logEntry[V]{seq: seq}
	l.live--
	// Acks mostly come in order: drop the cleared prefix at once.
	k := 0
	for k < len(e) && !e[k].live {
		k++
	}
	if k > 0 {
		clear(e[:k])
		l.entries = e[k:]
	}
	l.compact()
	return v, true
}

func (l *seqLog[V]) compact() {
	dead := len(l.entries) - l.live
	if dead < compactMin || dead < l.live {
		return
	}
	// A new array, so that the memory of the old one is released.
	out := make([]logEntry[V], 0, l.live)
	for _, e := range l.entries {
		if e.live {
			out = append(out, e)
		}
	}
	l.entries = out
}

// after calls fn with up to max live entries whose Seq is greater than
// seq, in order; max <= 0 means no limit.
func (l *seqLog[V]) after(seq uint64, max int, fn func(seq uint64, v V)) {
	e := l.entries
	i := sort.Search(len(e), func(i int) bool { return e[i].seq > seq })
	n := 0
	for ; i < len(e) && (max <= 0 || n < max); i++ {
		if e[i].live {
			fn(e[i].seq, e[i].v)
			n++
		}
	}
}

// liveEntries returns a copy of the live entries, in Seq order.
func (l *seqLog[V]) liveEntries() []logEntry[V] {
	out := make([]logEntry[V], 0, l.live)
	for _, e := range l.entries {
		if e.live {
			out = append(out, e)
		}
	}
	return out
}

type resultVal struct {
	id      string
	payload []byte
	attempt int32
}

// recordResult completes a pending task with a result.
func (s *session) recordResult(seq uint64, id string, t *task, payload []byte) {
	s.results.append(seq, resultVal{id: id, payload: payload, attempt: t.attempts + 1})
	t.state = fsmpb.TaskState_TASK_STATE_COMPLETED
	t.payload = nil
	t.errors = nil
	t.outSeq = seq
	s.leavePending(t)
	s.completed++
}

// ackResults drops acknowledged results; the task id stays known so that a
// resubmission is a duplicate. Unknown or already acknowledged ids, and
// sessions that are closed or unknown, are ignored.
func (f *FSM) ackResults(a *fsmpb.Ack) Response {
	var r Response
	s, ok := f.st.sessions[a.GetSessionId()]
	if !ok || s.closed {
		return r
	}
	for _, id := range a.GetTaskIds() {
		t, ok := s.tasks[id]
		if !ok || t.state != fsmpb.TaskState_TASK_STATE_COMPLETED {
			continue
		}
		s.results.remove(t.outSeq)
		t.state = fsmpb.TaskState_TASK_STATE_COMPLETED_ACKED
		t.outSeq = 0
		r.Acked++
	}
	return r
}

// ResultsAfter returns up to max unacknowledged results of the session
// whose Seq is greater than after, in Seq order. max <= 0 means no limit.
func (f *FSM) ResultsAfter(session string, after uint64, max int) []Result {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.st.sessions[session]
	if !ok {
		return nil
	}
	var out []Result
	s.results.after(after, max, func(seq uint64, v resultVal) {
		out = append(out, Result{TaskID: v.id, Payload: v.payload, Seq: seq, Attempt: v.attempt})
	})
	return out
}
