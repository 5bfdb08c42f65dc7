package dispatch

import (
	"context"
	"sync"
	"time"
)

// DefaultClientExitGrace is how long a session with cleanup_on_client_exit
// waits for a client to claim its results stream again before the leader
// closes it.
const DefaultClientExitGrace = 30 * time.Second

// clientExitRetry is the wait before a failed close is tried again by the
// same leader (a new leader starts its own timers anyway).
const clientExitRetry = 2 * time.Second

// exitWatch holds the leader-local timers of cleanup_on_client_exit: one per
// session that has the attribute and no results client stream. The timers
// are not replicated: after an election the new leader arms a timer for
// every such session, since no client stream survives a leader change, so a
// session whose client died with the old leader is still closed, at most a
// grace period late. Every field is guarded by Dispatcher.mu.
type exitWatch struct {
	timers map[string]*exitTimer
	ctx    context.Context // ends on Deactivate: proposals in flight give up
	cancel context.CancelFunc
	wg     sync.WaitGroup // expiries proposing a close
}

type exitTimer struct{ t *time.Timer }

// armClientExitLocked starts the grace period of a session that has no
// results client stream, unless one runs already. d.mu must be held.
func (d *Dispatcher) armClientExitLocked(sessionID string, after time.Duration) {
	if d.opts.CloseSession == nil || !d.active || d.exits.timers[sessionID] != nil {
		return
	}
	if d.clients[clientKey{sessionID, KindResults}] != nil {
		return
	}
	if d.exits.ctx == nil {
		d.exits.ctx, d.exits.cancel = context.WithCancel(context.Background())
	}
	tok := &exitTimer{}
	d.exits.timers[sessionID] = tok
	tok.t = time.AfterFunc(after, func() { d.clientExitExpired(sessionID, tok) })
}

// disarmClientExitLocked stops a session's grace period. d.mu must be held.
func (d *Dispatcher) disarmClientExitLocked(sessionID string) {
	if tok := d.exits.timers[sessionID]; tok != nil {
		tok.t.Stop()
		delete(d.exits.timers, sessionID)
	}
}

// clientExitSessionChanged follows the attribute and the session's end.
// d.mu must be held.
func (d *Dispatcher) clientExitSessionChangedLocked(id string, closed, cleanup bool) {
	if closed || !cleanup {
		d.disarmClientExitLocked(id)
		return
	}
	d.armClientExitLocked(id, d.opts.ClientExitGrace)
}

// armClientExits starts the grace period of every open session with
// cleanup_on_client_exit; called by Activate, when no client stream is
// claimed yet on this leader.
func (d *Dispatcher) armClientExits() {
	if d.opts.CloseSession == nil {
		return
	}
	infos := d.fsm.Sessions()
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, info := range infos {
		if !info.Closed && info.Attrs.CleanupOnClientExit {
			d.armClientExitLocked(info.ID, d.opts.ClientExitGrace)
			n++
		}
	}
	if n > 0 {
		d.log.Info("waiting for the clients of sessions with cleanup_on_client_exit", "sessions", n,
			"grace", d.opts.ClientExitGrace)
	}
}

// stopClientExits stops every timer and waits for closes in flight; called
// by Deactivate after it marked the dispatcher inactive.
func (d *Dispatcher) stopClientExits() {
	d.mu.Lock()
	for id := range d.exits.timers {
		d.disarmClientExitLocked(id)
	}
	if d.exits.cancel != nil {
		d.exits.cancel()
		d.exits.ctx, d.exits.cancel = nil, nil
	}
	d.mu.Unlock()
	d.exits.wg.Wait()
}

// clientReleased arms the grace period when the session's last results
// stream ended. Called without d.mu held.
func (d *Dispatcher) clientReleased(sessionID string) {
	if d.opts.CloseSession == nil {
		return
	}
	info, ok := d.fsm.Session(sessionID)
	if !ok || info.Closed || !info.Attrs.CleanupOnClientExit {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.armClientExitLocked(sessionID, d.opts.ClientExitGrace)
}

// clientExitExpired closes the session if no client claimed its results
// stream during the grace period.
func (d *Dispatcher) clientExitExpired(sessionID string, tok *exitTimer) {
	d.mu.Lock()
	if !d.active || d.exits.timers[sessionID] != tok || d.clients[clientKey{sessionID, KindResults}] != nil {
		d.mu.Unlock()
		return
	}
	delete(d.exits.timers, sessionID)
	ctx := d.exits.ctx
	// Added under d.mu while active: stopClientExits, which waits, runs
	// only after Deactivate cleared active under d.mu.
	d.exits.wg.Add(1)
	d.mu.Unlock()
	defer d.exits.wg.Done()

	info, ok := d.fsm.Session(sessionID)
	if !ok || info.Closed || !info.Attrs.CleanupOnClientExit {
		return
	}
	// A client that reconnects between here and the commit loses the
	// session; the grace period makes that window the rare case.
	err := d.opts.CloseSession(ctx, sessionID)
	if err == nil {
		d.log.Info("session closed: its client did not come back (cleanup_on_client_exit)",
			"session", sessionID, "grace", d.opts.ClientExitGrace)
		return
	}
	if ctx.Err() != nil {
		return // leadership lost: the next leader starts its own timer
	}
	d.log.Warn("could not close a session whose client left; retrying", "session", sessionID,
		"retry_in", clientExitRetry, "err", err)
	d.mu.Lock()
	d.armClientExitLocked(sessionID, clientExitRetry)
	d.mu.Unlock()
}
