package rpc

import (
	"sort"
	"sync"

	"github.com/gridd/gridd/rpc/griddpb"
)

// earlyResults tracks, for one client stream, the results sent before
// their commit (see dispatch.EarlyResults). Each stays tracked until the
// stream sees it committed: then it is not sent a second time, and an
// acknowledgement the client sent in between is proposed only then, so
// that it lands in the log after the outcome it acknowledges (an ack
// applied before its result would be ignored, leaving the result
// unacknowledged for good).
type earlyResults struct {
	mu sync.Mutex
	// id -> whether the client acknowledged it before its commit was seen
	ids map[string]bool
}

func newEarlyResults() *earlyResults { return &earlyResults{ids: map[string]bool{}} }

// add tracks the results that are not tracked yet and returns them: those
// to send now.
func (e *earlyResults) add(msgs []*griddpb.Message) []*griddpb.Message {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := msgs[:0]
	for _, m := range msgs {
		if _, ok := e.ids[m.Id]; ok {
			continue
		}
		e.ids[m.Id] = false
		out = append(out, m)
	}
	return out
}

// holdAcks removes from ids those of results not seen committed yet, and
// remembers that the client acknowledged them; it returns the ids to
// acknowledge now.
func (e *earlyResults) holdAcks(ids []string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.ids) == 0 {
		return ids
	}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, ok := e.ids[id]; ok {
			e.ids[id] = true
			continue
		}
		out = append(out, id)
	}
	return out
}

// heldAcked returns the ids whose acknowledgement is held back.
func (e *earlyResults) heldAcked() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for id, acked := range e.ids {
		if acked {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// committed stops tracking id, now seen committed. sentEarly says the
// client already has it; acked that its acknowledgement was held back and
// must be proposed now.
func (e *earlyResults) committed(id string) (sentEarly, acked bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	acked, sentEarly = e.ids[id]
	delete(e.ids, id)
	return sentEarly, acked
}
