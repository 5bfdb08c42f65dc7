package worker

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/gridd/gridd/rpc/griddpb"
)

// ErrNotTask is returned by ExtendLease for a context that is not (derived
// from) a handler's context.
var ErrNotTask = errors.New("gridd worker: the context does not belong to a running task")

type taskKey struct{}

// taskCtl lets a handler reach its binding through its context.
type taskCtl struct {
	b  *binding
	id string
	rt *runTask
}

// ExtendLease renews the lease of the task whose handler ctx belongs to:
// the server waits the session's task_timeout_ms again, from the moment the
// renewal arrives, before it gives up on the task. A session without a
// task_timeout_ms has no leases and the call changes nothing.
//
// A handler that runs longer than task_timeout_ms calls it more often than
// that (every third of it, say), or uses KeepLease. Leases are never
// renewed on the handler's behalf, so a hung handler still times out and
// its task is retried elsewhere.
//
// It does not wait for the server. It returns ctx's error once the task
// was stopped (timed out, cancelled) or its stream broke, and ErrNotTask
// for a context that is not a handler's.
func ExtendLease(ctx context.Context) error {
	tc, ok := ctx.Value(taskKey{}).(*taskCtl)
	if !ok {
		return ErrNotTask
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b := tc.b
	b.tmu.Lock()
	defer b.tmu.Unlock()
	if b.tasks[tc.id] == tc.rt && !tc.rt.stopped {
		b.extend[tc.id] = struct{}{}
		b.kickLocked()
	}
	return nil
}

// KeepLease calls ExtendLease every interval until the returned function is
// called or ctx ends: for a handler that knows it is alive but cannot call
// ExtendLease from its work loop. Choose an interval well below the
// session's task_timeout_ms, and call stop as soon as the work is done:
//
//	stop := worker.KeepLease(ctx, 10*time.Second)
//	defer stop()
func KeepLease(ctx context.Context, interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if ExtendLease(ctx) != nil {
					return
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// takeControl returns the lease extensions and stop confirmations waiting
// to be sent, as one message, or nil.
func (b *binding) takeControl() *griddpb.WorkerStreamMessage {
	b.tmu.Lock()
	defer b.tmu.Unlock()
	if len(b.extend) == 0 && len(b.confirm) == 0 {
		return nil
	}
	m := &griddpb.WorkerStreamMessage{}
	if len(b.extend) > 0 {
		m.ExtendLease = make([]string, 0, len(b.extend))
		for id := range b.extend {
			m.ExtendLease = append(m.ExtendLease, id)
		}
		clear(b.extend)
		sort.Strings(m.ExtendLease)
	}
	if len(b.confirm) > 0 {
		m.Results = &griddpb.Batch{SessionId: b.session, Messages: b.confirm}
		b.confirm = nil
	}
	return m
}
