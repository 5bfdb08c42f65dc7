package checker

import (
	"fmt"

	"github.com/gridd/gridd/jepsen/history"
)

// SharedDataResult is the verdict of the shared-data workload: one writer
// storing ever higher levels of a session's shared data, readers getting
// the latest level or exact ones.
type SharedDataResult struct {
	Valid bool `json:"valid"`
	// Writes attempted and acknowledged; MaxLevel is the highest level an
	// acknowledged write stored.
	Writes      int   `json:"writes"`
	WritesAcked int   `json:"writes_acked"`
	MaxLevel    int64 `json:"max_level"`
	Reads       int   `json:"reads"`
	ReadsOK     int   `json:"reads_ok"`
	// Backwards: a reader's latest-level read returned a lower level than
	// one the same reader had already seen. Invalid.
	Backwards int `json:"backwards"`
	// WrongBytes: a read returned bytes other than those written for its
	// level, a level never written (or whose every write was refused), or, for an
	// exact read, another level than asked. Invalid.
	WrongBytes int `json:"wrong_bytes"`
	// Stale: a read that began after the write of a higher level was
	// acknowledged saw an older level (or FailedPrecondition for that
	// level). Reported, not judged: the API promises readers monotonic
	// levels, not linearizable reads.
	Stale    int      `json:"stale"`
	Examples []string `json:"examples,omitempty"`
}

// SharedData checks the shared-data operations of a history: every read
// returns the bytes written for the level it reports, and the levels one
// reader sees through latest-level reads never go backwards.
func SharedData(ops []history.Op) SharedDataResult {
	var r SharedDataResult
	type write struct {
		digest string
		// attempts and refusals of this level: it cannot exist when every
		// attempt was refused (a definite failure).
		attempts, refusals int
		ackedAt            int64 // completion time of an acknowledged write; 0 if not
	}
	writes := map[int64]*write{}
	pending := map[int]history.Op{} // process -> its open invoke
	// First pass: what was written, and when it was acknowledged.
	for _, op := range ops {
		if op.F != history.SharedWrite {
			continue
		}
		if op.Type == history.Invoke {
			pending[op.Process] = op
			r.Writes++
			if w, ok := writes[op.Value.Level]; !ok {
				writes[op.Value.Level] = &write{digest: op.Value.Digest, attempts: 1}
			} else if w.attempts++; w.digest != op.Value.Digest {
				// The workload writes each level once; two contents for one
				// level make every read of it ambiguous.
				r.example("level %d written twice with different bytes", op.Value.Level)
				r.WrongBytes++
			}
			continue
		}
		inv, ok := pending[op.Process]
		if !ok {
			continue
		}
		delete(pending, op.Process)
		w := writes[inv.Value.Level]
		switch op.Type {
		case history.OK:
			r.WritesAcked++
			if w.ackedAt == 0 {
				w.ackedAt = op.Time
			}
			r.MaxLevel = max(r.MaxLevel, inv.Value.Level)
		case history.Fail:
			w.refusals++
		}
	}
	// ackedBefore returns the highest level whose write was acknowledged
	// before t.
	ackedBefore := func(t int64) int64 {
		var l int64
		for level, w := range writes {
			if w.ackedAt > 0 && w.ackedAt < t {
				l = max(l, level)
			}
		}
		return l
	}
	seen := map[int]int64{} // reader process -> highest level it saw
	for _, op := range ops {
		if op.F != history.SharedRead {
			continue
		}
		if op.Type == history.Invoke {
			pending[op.Process] = op
			r.Reads++
			continue
		}
		inv, ok := pending[op.Process]
		if !ok {
			continue
		}
		delete(pending, op.Process)
		asked := inv.Value.Level
		if op.Type == history.Fail && op.Value.Code == "FailedPrecondition" && asked > 0 &&
			asked <= ackedBefore(inv.Time) {
			r.Stale++
			r.example("reader %d: level %d not there yet (FailedPrecondition), though acknowledged before the read",
				op.Process, asked)
		}
		if op.Type != history.OK {
			continue
		}
		r.ReadsOK++
		got := op.Value.Level
		w := writes[got]
		switch {
		case asked > 0 && got != asked:
			r.WrongBytes++
			r.example("reader %d asked for level %d and got level %d", op.Process, asked, got)
		case w == nil:
			r.WrongBytes++
			r.example("reader %d read level %d, which no one wrote", op.Process, got)
		case w.refusals == w.attempts:
			r.WrongBytes++
			r.example("reader %d read level %d, whose write was refused", op.Process, got)
		case w.digest != op.Value.Digest:
			r.WrongBytes++
			r.example("reader %d read level %d with digest %.12s, written %.12s", op.Process, got,
				op.Value.Digest, w.digest)
		}
		if asked == 0 {
			if prev := seen[op.Process]; got < prev {
				r.Backwards++
				r.example("reader %d: latest went back from level %d to %d", op.Process, prev, got)
			}
			if floor := ackedBefore(inv.Time); got < floor {
				r.Stale++
				r.example("reader %d: latest read level %d, level %d acknowledged before the read began",
					op.Process, got, floor)
			}
		}
		seen[op.Process] = max(seen[op.Process], got)
	}
	r.Valid = r.Backwards == 0 && r.WrongBytes == 0
	return r
}

func (r *SharedDataResult) example(format string, args ...any) {
	if len(r.Examples) < 10 {
		r.Examples = append(r.Examples, fmt.Sprintf(format, args...))
	}
}
