package worker

import (
	"context"
	"errors"
	"sort"
	"time"
)

// ErrNotTask is returned by ExtendLease for a context that is not (derived
// from) a handler's context.
var ErrNotTask = errors.New("gridd worker: the context does not belong to a running task")

type taskKey struct{}

// taskCtl lets a handler reach its binding through its context.
type taskCtl struct {
	b  *binding
	id string
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
	if _, running := b.running[tc.id]; running {
		b.extend[tc.id] = struct{}{}
	}
	b.tmu.Unlock()
	select {
	case b.extendCh <- struct{}{}:
	default:
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

// takeExtend returns the tasks whose leases are to be renewed.
func (b *binding) takeExtend() []string {
	b.tmu.Lock()
	defer b.tmu.Unlock()
	if len(b.extend) == 0 {
		return nil
	}
	ids := make([]string, 0, len(b.extend))
	for id := range b.extend {
		ids = append(ids, id)
	}
	clear(b.extend)
	sort.Strings(ids)
	return ids
}
