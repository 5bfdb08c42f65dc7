package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
)

type benchFlags struct {
	tasks, batch, payload, submitters, workers, concurrency int
	mode                                                    string
	sessionPriority                                         int32
	drainTimeout                                            time.Duration
	quiet                                                   bool
}

const benchLong = `Measure the cluster end to end: create a session, submit --tasks tasks of
--payload bytes, collect every result, close the session, and report the
throughput and the latency from each task's submission to its result.

Modes:
  batched     --submitters goroutines each submit batches of --batch tasks
  unbatched   one task per batch, from --submitters goroutines (default 16)
  pingpong    one task at a time: submit, wait for its result, submit the next

--workers W starts W no-op workers in this process (--worker-concurrency tasks
each); with 0, workers already connected to the cluster must run the tasks.
The in-process workers refuse tasks of any other session (each refusal costs
that task an attempt), so run bench against a cluster that is not running
other work, or give --workers 0.

The run survives leader failovers (the SDK resends unacknowledged batches and
drops repeated results). It checks the headline promise as it measures:
"duplicates" counts results delivered to the application more than once,
"missing" acknowledged tasks without a result after --drain-timeout. gridctl
exits 1 if either is not 0. The last line of the output is one JSON object
with every figure.`

const benchExample = `  gridctl bench --tasks 200000 --batch 100 --payload 100 --workers 2
  gridctl bench --mode unbatched --tasks 50000 --submitters 16
  gridctl bench --mode pingpong --tasks 2000 -o json | tail -1 | jq .p50_ms`

func newBenchCmd(g *globals) *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:     "bench",
		Short:   "Benchmark the cluster: throughput, latency, and no lost or repeated result",
		Long:    benchLong,
		Example: benchExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(cmd); err != nil {
				return err
			}
			return runBench(cmd.Context(), g, &f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&f.tasks, "tasks", 100_000, "tasks to run")
	fs.IntVar(&f.batch, "batch", 100, "tasks per batch (batched mode)")
	fs.IntVar(&f.payload, "payload", 100, "payload bytes per task")
	fs.IntVar(&f.submitters, "submitters", 4, "concurrent submitters (unbatched mode: default 16)")
	fs.IntVar(&f.workers, "workers", 2, "no-op workers to run in this process; 0 relies on external workers")
	fs.IntVar(&f.concurrency, "worker-concurrency", 16, "tasks each in-process worker runs at once")
	fs.StringVar(&f.mode, "mode", "batched", "batched, unbatched or pingpong")
	fs.Int32Var(&f.sessionPriority, "session-priority", 0, "priority of the bench session, 0-10 (0: the server's default)")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 60*time.Second, "how long to wait for results after the last submission")
	fs.BoolVarP(&f.quiet, "quiet", "q", false, "no progress bar on standard error")
	return cmd
}

func (f *benchFlags) check(cmd *cobra.Command) error {
	switch f.mode {
	case "batched":
	case "unbatched":
		f.batch = 1
		if !cmd.Flags().Changed("submitters") {
			f.submitters = 16
		}
	case "pingpong":
		f.batch, f.submitters = 1, 1
	default:
		return fmt.Errorf("--mode %q: want batched, unbatched or pingpong", f.mode)
	}
	switch {
	case f.tasks <= 0:
		return fmt.Errorf("--tasks %d: want at least 1", f.tasks)
	case f.batch <= 0:
		return fmt.Errorf("--batch %d: want at least 1", f.batch)
	case f.payload < 0:
		return fmt.Errorf("--payload %d: want 0 or more bytes", f.payload)
	case f.submitters <= 0:
		return fmt.Errorf("--submitters %d: want at least 1", f.submitters)
	case f.workers < 0:
		return fmt.Errorf("--workers %d: want 0 or more", f.workers)
	case f.concurrency <= 0:
		return fmt.Errorf("--worker-concurrency %d: want at least 1", f.concurrency)
	case f.drainTimeout <= 0:
		return fmt.Errorf("--drain-timeout %s: want a positive duration", f.drainTimeout)
	case f.sessionPriority < 0 || f.sessionPriority > 10:
		return fmt.Errorf("--session-priority %d: want 0 to 10", f.sessionPriority)
	}
	return nil
}

// benchReport is the last line of bench's output.
type benchReport struct {
	Mode         string  `json:"mode"`
	Tasks        int     `json:"tasks"`
	Batch        int     `json:"batch"`
	PayloadBytes int     `json:"payload_bytes"`
	Submitters   int     `json:"submitters"`
	Workers      int     `json:"workers"`
	Acked        int     `json:"acked"`
	Results      int     `json:"results"`
	DeadLetters  int     `json:"dead_letters"`
	Duplicates   int     `json:"duplicates"`
	Missing      int     `json:"missing"`
	TasksPerSec  float64 `json:"tasks_per_sec"`
	P50Ms        float64 `json:"p50_ms"`
	P90Ms        float64 `json:"p90_ms"`
	P99Ms        float64 `json:"p99_ms"`
	MaxMs        float64 `json:"max_ms"`
	Seconds      float64 `json:"seconds"`
	Reconnects   uint64  `json:"reconnects"`
	Resent       uint64  `json:"batches_resent"`
	Session      string  `json:"session"`
	Error        string  `json:"error,omitempty"`
}

// bench is one run's shared state. Task i has id strconv.Itoa(i).
type bench struct {
	f       *benchFlags
	s       *client.Session
	payload []byte

	sent    []atomic.Int64 // unix ns of the Submit that first carried task i
	acked   []atomic.Bool  // task i's batch was acknowledged durable
	nAcked  atomic.Int64
	pong    chan struct{} // pingpong: the awaited result arrived
	waitFor atomic.Int64  // pingpong: the task whose result is awaited

	// Owned by the collector goroutine.
	got     []uint8
	latency []time.Duration
	results int
	dead    int
	dups    int
	last    time.Time
}

func runBench(ctx context.Context, g *globals, f *benchFlags, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := sdkClient(ctx, g, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	s, err := c.CreateSession(ctx, &griddpb.SessionAttributes{Priority: f.sessionPriority}, client.WithApp("gridctl-bench"),
		client.WithMaxBatch(max(f.batch, 1), 4<<20))
	if err != nil {
		return fmt.Errorf("create the bench session: %w", err)
	}
	b := &bench{f: f, s: s, payload: make([]byte, f.payload),
		sent: make([]atomic.Int64, f.tasks), acked: make([]atomic.Bool, f.tasks),
		got: make([]uint8, f.tasks), latency: make([]time.Duration, 0, f.tasks), pong: make(chan struct{}, 1)}
	for i := range b.payload {
		b.payload[i] = 'a' + byte(i%26)
	}
	b.waitFor.Store(-1)

	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	var workers sync.WaitGroup
	for i := range f.workers {
		opts := worker.Options{Addrs: g.addrs, APIKey: g.apiKey, TLS: g.tls, WorkerID: fmt.Sprintf("bench-%s-%d", s.ID(), i+1),
			Concurrency: f.concurrency, Logger: log, DrainTimeout: 2 * time.Second}
		workers.Go(func() {
			if err := worker.Run(wctx, opts, b.noop); err != nil {
				log.Warn("bench worker stopped", "worker", opts.WorkerID, "err", err)
			}
		})
	}
	stopAll := func() {
		stopWorkers()
		workers.Wait()
	}

	bar := newProgressBar(stderr, !f.quiet && isTerminal(stderr))
	start := time.Now()
	runErr := b.run(ctx, bar)
	bar.finish()
	elapsed := b.last.Sub(start)
	if b.last.IsZero() {
		elapsed = time.Since(start)
	}
	stats := s.Stats()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(g.timeout, 10*time.Second))
	defer cancel()
	if err := s.Close(cctx); err != nil {
		log.Warn("closing the bench session failed; close it with gridctl session close", "session", s.ID(), "err", err)
	}
	stopAll()

	rep := b.report(elapsed, stats)
	if runErr != nil {
		rep.Error = runErr.Error()
	}
	if err := printBench(stdout, g, rep); err != nil {
		return err
	}
	switch {
	case runErr != nil:
		return runErr
	case rep.Duplicates != 0 || rep.Missing != 0:
		return fmt.Errorf("bench: %d duplicate and %d missing results", rep.Duplicates, rep.Missing)
	case rep.Acked != rep.Tasks:
		return fmt.Errorf("bench: only %d of %d tasks were acknowledged", rep.Acked, rep.Tasks)
	}
	return nil
}

// noop is the in-process workers' handler: an empty result, at once. Tasks
// of other sessions are refused rather than given a bogus result.
func (b *bench) noop(_ context.Context, t worker.Task) ([]byte, error) {
	if t.SessionID != b.s.ID() {
		return nil, fmt.Errorf("gridctl bench worker runs only session %s", b.s.ID())
	}
	return nil, nil
}

// run submits and collects until every acknowledged task has a result, or
// the drain timeout after the last submission.
func (b *bench) run(ctx context.Context, bar *progressBar) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	subErr := make(chan error, 1)
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		if err := b.submitAll(ctx); err != nil {
			subErr <- err
		}
	}()
	finished := subDone // subDone is set to nil once seen
	defer func() { cancel(); <-finished }()

	results, dead := b.s.Results(), b.s.DeadLetters()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var drainTimer <-chan time.Time
	submitted := false
	for {
		select {
		case r, ok := <-results:
			if !ok {
				return errors.New("the session's results ended early (was the session closed?)")
			}
			b.result(r.TaskID, true)
		case d, ok := <-dead:
			if !ok {
				dead = nil
				continue
			}
			b.result(d.TaskID, false)
		case err := <-subErr:
			return err
		case <-subDone:
			if !submitted {
				submitted = true
				drainTimer = time.After(b.f.drainTimeout)
			}
			subDone = nil
		case <-drainTimer:
			return nil // missing is counted by report
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("bench interrupted: %w", ctx.Err())
		}
		bar.update(uint64(b.results+b.dead), uint64(b.f.tasks), uint64(b.dead), false)
		if submitted && b.complete() {
			bar.update(uint64(b.results+b.dead), uint64(b.f.tasks), uint64(b.dead), true)
			return nil
		}
	}
}

// complete reports whether every acknowledged task has an outcome; the
// cheap count comes first, the exact check only when it can succeed.
func (b *bench) complete() bool {
	if int64(b.results+b.dead) < b.nAcked.Load() {
		return false
	}
	return b.missing() == 0
}

func (b *bench) missing() int {
	n := 0
	for i := range b.got {
		if b.acked[i].Load() && b.got[i] == 0 {
			n++
		}
	}
	return n
}

func (b *bench) result(id string, ok bool) {
	now := time.Now()
	i, err := strconv.Atoi(id)
	if err != nil || i < 0 || i >= len(b.got) {
		b.dups++ // not a task of this run: never expected, so counted as a repeat
		return
	}
	if b.got[i]++; b.got[i] > 1 {
		b.got[i] = 2
		b.dups++
		return
	}
	b.last = now
	if ok {
		b.results++
		b.latency = append(b.latency, now.Sub(time.Unix(0, b.sent[i].Load())))
	} else {
		b.dead++
	}
	if int64(i) == b.waitFor.Load() {
		select {
		case b.pong <- struct{}{}:
		default:
		}
	}
}

// submitAll runs the submitters: batches are taken in order from a shared
// counter, so the tasks go out roughly in id order whatever S is.
func (b *bench) submitAll(ctx context.Context) error {
	if b.f.mode == "pingpong" {
		return b.pingpong(ctx)
	}
	var next atomic.Int64
	nBatches := (b.f.tasks + b.f.batch - 1) / b.f.batch
	errs := make(chan error, b.f.submitters)
	var wg sync.WaitGroup
	for range b.f.submitters {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= nBatches {
					return
				}
				lo, hi := k*b.f.batch, min((k+1)*b.f.batch, b.f.tasks)
				if err := b.submit(ctx, lo, hi); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (b *bench) pingpong(ctx context.Context) error {
	for i := range b.f.tasks {
		b.waitFor.Store(int64(i))
		if err := b.submit(ctx, i, i+1); err != nil {
			return err
		}
		select {
		case <-b.pong:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// submit sends tasks lo..hi-1 as one batch. The SDK resends across
// failovers; a retryable error that still comes back (the caller's call
// timeout during a long election) is retried here with the same ids, which
// the server deduplicates.
func (b *bench) submit(ctx context.Context, lo, hi int) error {
	tasks := make([]client.Task, hi-lo)
	now := time.Now().UnixNano()
	for i := range tasks {
		tasks[i] = client.Task{ID: strconv.Itoa(lo + i), Payload: b.payload}
		b.sent[lo+i].CompareAndSwap(0, now)
	}
	wait := 50 * time.Millisecond
	for {
		_, err := b.s.Submit(ctx, tasks)
		if err == nil {
			for i := lo; i < hi; i++ {
				b.acked[i].Store(true)
			}
			b.nAcked.Add(int64(hi - lo))
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
			return fmt.Errorf("submit tasks %d..%d: %w", lo, hi-1, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

func (b *bench) report(elapsed time.Duration, st client.Stats) benchReport {
	lat := slices.Clone(b.latency)
	slices.Sort(lat)
	secs := elapsed.Seconds()
	rep := benchReport{Mode: b.f.mode, Tasks: b.f.tasks, Batch: b.f.batch, PayloadBytes: b.f.payload,
		Submitters: b.f.submitters, Workers: b.f.workers, Acked: int(b.nAcked.Load()), Results: b.results,
		DeadLetters: b.dead, Duplicates: b.dups, Missing: b.missingResults(), Seconds: round(secs, 3),
		P50Ms: pct(lat, 50), P90Ms: pct(lat, 90), P99Ms: pct(lat, 99), Reconnects: st.Reconnects,
		Resent: st.BatchesResent, Session: b.s.ID()}
	if len(lat) > 0 {
		rep.MaxMs = ms(lat[len(lat)-1])
	}
	if secs > 0 {
		rep.TasksPerSec = round(float64(b.results)/secs, 0)
	}
	return rep
}

// missingResults counts acknowledged tasks without a result; a dead letter
// is not a result.
func (b *bench) missingResults() int {
	n := 0
	for i := range b.got {
		if b.acked[i].Load() && b.got[i] == 0 {
			n++
		}
	}
	return n + b.dead
}

// pct is the p-th percentile of sorted latencies, in milliseconds (nearest
// rank).
func pct(sorted []time.Duration, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(float64(p)/100*float64(len(sorted)))) - 1
	return ms(sorted[min(max(k, 0), len(sorted)-1)])
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func printBench(w io.Writer, g *globals, r benchReport) error {
	if g.output != "json" {
		err := keyValues(w, [][2]string{
			{"mode", fmt.Sprintf("%s: batch %d, %d submitters, %d in-process workers, %d-byte payloads",
				r.Mode, r.Batch, r.Submitters, r.Workers, r.PayloadBytes)},
			{"session", r.Session},
			{"tasks", fmt.Sprintf("%d submitted, %d acknowledged", r.Tasks, r.Acked)},
			{"results", fmt.Sprintf("%d (%d duplicates, %d missing, %d dead letters)", r.Results, r.Duplicates, r.Missing, r.DeadLetters)},
			{"time", fmt.Sprintf("%.3f s", r.Seconds)},
			{"throughput", fmt.Sprintf("%.0f tasks/s", r.TasksPerSec)},
			{"latency", fmt.Sprintf("p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms (submit to result)", r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs)},
			{"failover", fmt.Sprintf("%d stream reconnects, %d batches resent", r.Reconnects, r.Resent)},
		})
		if err != nil {
			return err
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode the report: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
