package client

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/gridd/gridd/sdk/internal/conn"
)

// DefaultMaxInflightTasks is the default bound on a session's tasks in
// flight (see WithMaxInflightTasks).
const DefaultMaxInflightTasks = 100_000

// flow bounds the tasks in flight: submitted by this Session value and
// without an outcome handed to the application yet. It counts task ids, not
// sends, so a batch resent after a failover and a result repeated by the
// server do not count twice.
//
// Why ids in flight rather than bytes or batches: every in-flight task holds
// memory on the leader (its payload, later its result) and here (the inbox
// queue when the application reads slowly); the bound keeps a fast producer
// from running the cluster or itself out of memory.
type flow struct {
	max int // <= 0: no bound

	mu     sync.Mutex
	ids    map[string]struct{}
	freed  chan struct{} // closed (and replaced) whenever slots are freed
	closed error         // once set, acquire fails with it
}

func newFlow(limit int) *flow {
	return &flow{max: limit, ids: make(map[string]struct{}), freed: make(chan struct{})}
}

// acquire counts the tasks' ids that are not counted yet and not in
// known (results already handed over), waiting while that would exceed the
// bound. A group larger than the whole bound is let through once nothing
// else is in flight, so it cannot wait forever. It returns the ids it
// counted, which the caller releases if it gives the tasks up. It fails
// with ctx.Err() or the error close was given.
func (f *flow) acquire(ctx context.Context, tasks []Task, known func(string) bool) ([]string, error) {
	for {
		f.mu.Lock()
		if f.closed != nil {
			err := f.closed
			f.mu.Unlock()
			return nil, err
		}
		// Count the group tentatively (that also skips repeats inside it),
		// and take it back if it does not fit.
		before := len(f.ids)
		var fresh []string
		for _, t := range tasks {
			if _, ok := f.ids[t.ID]; ok || (known != nil && known(t.ID)) {
				continue
			}
			f.ids[t.ID] = struct{}{}
			fresh = append(fresh, t.ID)
		}
		if f.max <= 0 || len(f.ids) <= f.max || before == 0 {
			f.mu.Unlock()
			return fresh, nil
		}
		for _, id := range fresh {
			delete(f.ids, id)
		}
		freed := f.freed
		f.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// opError wraps err for op: a context's end as a conn.CtxError (its gRPC
// code is the context's), anything else with the op's name.
func opError(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &conn.CtxError{Op: op, Ctx: err}
	}
	return fmt.Errorf("gridd: %s: %w", op, err)
}

// release stops counting ids; ids not counted are ignored.
func (f *flow) release(ids ...string) {
	if len(ids) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.ids)
	for _, id := range ids {
		delete(f.ids, id)
	}
	if len(f.ids) < n {
		close(f.freed)
		f.freed = make(chan struct{})
	}
}

// close fails waiting and later acquires with err.
func (f *flow) close(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed == nil {
		f.closed = err
		close(f.freed)
		f.freed = make(chan struct{})
	}
}

// snapshot returns the ids in flight now.
func (f *flow) snapshot() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.ids))
	for id := range f.ids {
		ids = append(ids, id)
	}
	return ids
}

// len is the number of tasks in flight.
func (f *flow) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ids)
}
