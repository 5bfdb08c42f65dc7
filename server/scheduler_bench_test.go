package server_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gridd/gridd/dispatch"
	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/server"
)

// BenchmarkPreemptionWait measures how long a high-priority session waits
// for its first worker when all four workers (concurrency 1) are busy on a
// preemptible low-priority session whose tasks take 20 ms each: from the
// submit of one high-priority task to the moment its handler starts. One
// op is one such wait, on a 3-node cluster; the low session uses the
// default max_inflight_batches_per_worker, so each worker holds hundreds
// of its tasks when the high one arrives.
//
//	go test ./server -run '^$' -bench PreemptionWait -benchtime 20x
func BenchmarkPreemptionWait(b *testing.B) {
	const lowTask = 20 * time.Millisecond
	for _, mode := range []dispatch.Preemption{dispatch.PreemptDrain, dispatch.PreemptImmediate} {
		b.Run(mode.String(), func(b *testing.B) {
			r := newSchedCluster(b, 3, mode, func(o *testcluster.Options) {
				next := o.Configure
				o.Configure = func(i int, cfg *server.Config) {
					next(i, cfg)
					cfg.Logger = quiet
				}
			})
			r.workers(4)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			var waits []time.Duration
			for i := 0; b.Loop(); i++ {
				low := r.delayed(ctx, &griddpb.SessionAttributes{Priority: 1, Preemptible: true}, lowTask)
				r.submit(low, "low", 4000)
				r.waitFor("four low tasks running", func() bool { return r.running(low) == 4 })
				high := r.delayed(ctx, &griddpb.SessionAttributes{Priority: 9}, 0)
				start := time.Now()
				r.submit(high, "high", 1)
				r.waitFor("the high task to start", func() bool { return !r.firstStart(high).IsZero() })
				waits = append(waits, r.firstStart(high).Sub(start))
				if err := low.Close(ctx); err != nil {
					b.Fatal(err)
				}
				if err := high.Close(ctx); err != nil {
					b.Fatal(err)
				}
				r.waitFor("every worker idle", func() bool { return r.bound()[""] == 4 })
			}
			slices.Sort(waits)
			var sum time.Duration
			for _, w := range waits {
				sum += w
			}
			mean := sum / time.Duration(len(waits))
			b.ReportMetric(float64(mean.Microseconds())/1000, "ms-wait")
			b.ReportMetric(float64(waits[len(waits)/2].Microseconds())/1000, "ms-p50")
			b.ReportMetric(float64(waits[len(waits)-1].Microseconds())/1000, "ms-max")
			b.ReportMetric(0, "ns/op") // dominated by setting up each round
			b.Logf("%s: %d waits for a first worker, min %v p50 %v max %v mean %v (low tasks %v; %d tasks cancelled, by immediate preemption or by closing the sessions after each round)",
				mode, len(waits), waits[0], waits[len(waits)/2], waits[len(waits)-1], mean, lowTask, r.cancelled.Load())
		})
	}
}

// delayed creates a session whose tasks each run for d (0: at once).
func (r *schedRig) delayed(ctx context.Context, attrs *griddpb.SessionAttributes, d time.Duration) *client.Session {
	r.t.Helper()
	s, err := r.cl.CreateSession(ctx, attrs)
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.delays[s.ID()] = d
	r.mu.Unlock()
	go func() {
		for range s.Results() {
		}
	}()
	return s
}

// running counts the session's tasks started and not finished or cancelled.
func (r *schedRig) running(s *client.Session) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started[s.ID()] - r.done[s.ID()] - r.stopped[s.ID()]
}

func (r *schedRig) firstStart(s *client.Session) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.firstTime[s.ID()]
}
