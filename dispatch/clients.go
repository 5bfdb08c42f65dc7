package dispatch

import "context"

// Kinds of client stream: one of each per session at a time.
const (
	KindResults     = "results"
	KindDeadLetters = "dead-letters"
)

// ClaimClient makes the caller the session's client stream of the given
// kind. An older stream of the same kind is cancelled: the newest one wins,
// so a client that reconnects never waits for the server to notice its dead
// connection. notify receives a signal whenever the session has new results
// or dead letters. The returned context ends when the claim does; call
// release when the stream ends.
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
	c.notify <- struct{}{} // send what is already there
	release = func() {
		cancel()
		d.mu.Lock()
		if d.clients[k] == c {
			delete(d.clients, k)
		}
		d.mu.Unlock()
	}
	return c.notify, ctx, release, nil
}
