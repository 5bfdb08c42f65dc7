package dispatch

import (
	"context"

	"github.com/gridd/gridd/rpc/griddpb"
)

// Kinds of client stream: one of each per session at a time.
const (
	KindResults     = "results"
	KindDeadLetters = "dead-letters"
)

// maxEarly bounds the results waiting to be sent early on one stream;
// beyond it they simply wait for their commit.
const maxEarly = 10_000

// ClaimClient makes the caller the session's client stream of the given
// kind. An older stream of the same kind is cancelled: the newest one wins,
// so a client that reconnects never waits for the server to notice its dead
// connection. notify receives a signal whenever the session has new results
// or dead letters (committed, or early: see EarlyResults). The returned
// context ends when the claim does; call release when the stream ends.
func (d *Dispatcher) ClaimClient(ctx context.Context, sessionID, kind string) (notify <-chan struct{}, claimCtx context.Context, release func(), err error) {
	ctx, cancel := context.WithCancel(ctx)
	c := &clientClaim{cancel: cancel, notify: make(chan struct{}, 1)}
	k := clientKey{sessionID, kind}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.active {
		cancel()
		return nil, nil, nil, ErrNotActive
	}
	if old := d.clients[k]; old != nil {
		old.cancel()
	}
	d.clients[k] = c
	if kind == KindResults {
		d.disarmClientExitLocked(sessionID)
	}
	c.notify <- struct{}{} // send what is already there
	release = func() {
		cancel()
		d.mu.Lock()
		last := d.clients[k] == c
		if last {
			delete(d.clients, k)
		}
		d.mu.Unlock()
		if last && kind == KindResults {
			d.clientReleased(sessionID)
		}
	}
	return c.notify, ctx, release, nil
}

// EarlyResults hands the results a worker just returned on st to the
// session's client stream before they are committed, which saves a commit
// on the latency path. If this leader dies before the commit, the task runs
// again and the SDK drops the repeat. Only successful results of tasks st
// holds are passed on: a late result of a task that already has an outcome
// is not. Call it before proposing the results, so that the client's
// acknowledgement can only follow the outcome in the log.
func (d *Dispatcher) EarlyResults(st *Stream, msgs []*griddpb.Message) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := st.session
	c := d.clients[clientKey{s.id, KindResults}]
	if c == nil || d.sessions[s.id] != s {
		return
	}
	n := 0
	for _, m := range msgs {
		if m.GetError() != "" || len(c.early) >= maxEarly {
			continue
		}
		if _, held := st.tasks[m.GetId()]; !held {
			continue
		}
		ts := s.tasks[m.GetId()]
		if ts == nil || ts.stream != st {
			continue
		}
		c.early = append(c.early, &griddpb.Message{Id: m.GetId(), Payload: m.GetPayload(), Attempt: ts.task.Attempts + 1})
		n++
	}
	if n > 0 {
		select {
		case c.notify <- struct{}{}:
		default:
		}
	}
}

// TakeEarly returns and forgets the early results waiting for the
// session's current client stream of kind results.
func (d *Dispatcher) TakeEarly(sessionID string, notify <-chan struct{}) []*griddpb.Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.clients[clientKey{sessionID, KindResults}]
	if c == nil || (<-chan struct{})(c.notify) != notify {
		return nil // the caller's claim was replaced
	}
	out := c.early
	c.early = nil
	return out
}
