//go:build unix

// Command demo is what `make run` shows: a local 3-node gridd cluster, four
// pricing workers and a client pricing a European option by Monte Carlo,
// with the Raft leader killed (SIGKILL) at 40% of the results and
// restarted from its data directory. The summary gives the price next to
// the closed form and says whether any task was lost or duplicated.
//
// It builds nothing: it runs bin/gridd and bin/pricing (make build).
// Every child runs in its own process group and is stopped on exit,
// Ctrl-C included. Logs are in .demo/*.log.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/gridd/gridd/examples/montecarlo/mc"
	"github.com/gridd/gridd/examples/pricing/pricer"
	"github.com/gridd/gridd/sdk/client"
)

type config struct {
	bin, dir string
	tasks    int
	workers  int
	paths    int
	killAt   float64
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var cfg config
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.bin, "bin", "bin", "directory holding the gridd and pricing binaries")
	fs.StringVar(&cfg.dir, "dir", ".demo", "working directory (emptied first): node data and logs")
	fs.IntVar(&cfg.tasks, "tasks", 20_000, "tasks to submit")
	fs.IntVar(&cfg.workers, "workers", 4, "worker processes")
	fs.IntVar(&cfg.paths, "paths", 100_000, "Monte Carlo paths per task")
	fs.Float64Var(&cfg.killAt, "kill-at", 0.4, "fraction of results after which the leader is killed (0 or more than 1: never)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	d := &demo{cfg: cfg, out: stdout, progress: mc.NewProgress(stderr)}
	defer d.cleanup()
	if err := d.setup(ctx); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "demo: interrupted; stopping every process")
			return 130
		}
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
	ok, err := d.workload(ctx)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "demo: interrupted; stopping every process")
			return 130
		}
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
	if !ok {
		fmt.Fprintln(stdout, "FAILED: tasks were lost or duplicated")
		return 1
	}
	fmt.Fprintln(stdout, "OK: every task produced exactly one result")
	return 0
}

// Fixed ports of the three nodes, as documented in the Makefile's run target.
var (
	grpcAddrs    = []string{"127.0.0.1:21337", "127.0.0.1:21338", "127.0.0.1:21339"}
	raftAddrs    = []string{"127.0.0.1:27337", "127.0.0.1:27338", "127.0.0.1:27339"}
	metricsAddrs = []string{"127.0.0.1:28080", "127.0.0.1:28081", "127.0.0.1:28082"}
)

type demo struct {
	cfg      config
	out      io.Writer
	progress *mc.Progress
	procs    procs
	nodes    []*proc
	client   *client.Client
	start    time.Time

	mu         sync.Mutex
	killed     string // node id
	killTime   time.Time
	killDone   int    // results when the leader was killed
	reconnects uint64 // the session's reconnections before the kill
	firstAfter time.Duration
	restarted  bool
	done       int    // results so far, for the progress bar
	sessRecon  uint64 // the session's reconnections so far
}

func (d *demo) logf(format string, a ...any) {
	d.progress.Println(fmt.Sprintf("[%6.2fs] ", time.Since(d.start).Seconds()) + fmt.Sprintf(format, a...))
}

func (d *demo) cleanup() {
	if d.client != nil {
		_ = d.client.Close()
	}
	// Workers first, so they drain while the cluster can still take results.
	d.procs.stopAll("worker", 15*time.Second)
	d.procs.stopAll("", 10*time.Second)
}

func (d *demo) setup(ctx context.Context) error {
	d.start = time.Now()
	gridd, pricing := filepath.Join(d.cfg.bin, "gridd"), filepath.Join(d.cfg.bin, "pricing")
	for _, b := range []string{gridd, pricing} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%s not found: run `make build` first (%w)", b, err)
		}
	}
	if err := os.RemoveAll(d.cfg.dir); err != nil {
		return fmt.Errorf("clean %s: %w", d.cfg.dir, err)
	}
	if err := os.MkdirAll(d.cfg.dir, 0o755); err != nil {
		return err
	}
	for i := range 3 {
		id := fmt.Sprintf("n%d", i+1)
		args := []string{"--id", id, "--data-dir", filepath.Join(d.cfg.dir, id),
			"--grpc-addr", grpcAddrs[i], "--raft-addr", raftAddrs[i], "--metrics-addr", metricsAddrs[i]}
		if i > 0 {
			args = append(args, "--join", grpcAddrs[0])
		}
		d.nodes = append(d.nodes, d.procs.add(id, filepath.Join(d.cfg.dir, id+".log"), gridd, args...))
	}
	if err := d.nodes[0].start(); err != nil {
		return err
	}
	d.logf("started n1 (pid %d), bootstrapping; logs in %s", d.nodes[0].pid(), d.cfg.dir)
	if err := d.waitMembers(ctx, 1); err != nil {
		return err
	}
	for _, n := range d.nodes[1:] {
		if err := n.start(); err != nil {
			return err
		}
		d.logf("started %s (pid %d), joining n1", n.name, n.pid())
	}
	if err := d.waitMembers(ctx, 3); err != nil {
		return err
	}
	for i := range d.cfg.workers {
		name := fmt.Sprintf("worker-%d", i+1)
		w := d.procs.add(name, filepath.Join(d.cfg.dir, name+".log"), pricing, "worker",
			"--addr", joinAddrs(), "--id", name, "--node", "demo", "--pod", name)
		// CPU-bound workers must not starve the nodes' Raft heartbeats
		// on a small machine, or leadership moves before the demo's kill.
		w.nice = 10
		if err := w.start(); err != nil {
			return err
		}
	}
	d.logf("started %d pricing workers", d.cfg.workers)
	return nil
}

func joinAddrs() string {
	s := grpcAddrs[0]
	for _, a := range grpcAddrs[1:] {
		s += "," + a
	}
	return s
}

// waitMembers waits until a leader reports n members, failing early if a
// node process exits.
func (d *demo) waitMembers(ctx context.Context, n int) error {
	if d.client == nil {
		logf, err := os.Create(filepath.Join(d.cfg.dir, "client.log"))
		if err != nil {
			return err
		}
		log := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo}))
		d.client, err = dialRetry(ctx, d.nodes[0], log)
		if err != nil {
			return err
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, p := range d.nodes {
			if p.pid() != 0 && !p.running() {
				return fmt.Errorf("%s exited; see %s", p.name, p.logf)
			}
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := d.client.ClusterStatus(sctx)
		cancel()
		if err == nil && len(st.GetMembers()) >= n {
			d.logf("leader %s (%s), %d members", st.GetLeaderId(), st.GetLeaderGrpcAddr(), len(st.GetMembers()))
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the cluster did not reach %d members within 60s (last: %v, %v)", n, st, err)
		}
		if err := pause(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// dialRetry connects to the first node once it answers.
func dialRetry(ctx context.Context, n1 *proc, log *slog.Logger) (*client.Client, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		if !n1.running() {
			return nil, fmt.Errorf("n1 exited; see %s", n1.logf)
		}
		c, err := client.Dial(ctx, append([]string(nil), grpcAddrs...), client.WithLogger(log),
			client.WithCallTimeout(time.Second))
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no leader within 60s: %w", err)
		}
	}
}

func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (d *demo) nodeByID(id string) *proc {
	for _, n := range d.nodes {
		if n.name == id {
			return n
		}
	}
	return nil
}

// onResult runs on the workload's collecting goroutine for every result.
func (d *demo) onResult(ctx context.Context) func(done, total int, s *client.Session) {
	var once sync.Once
	return func(done, total int, s *client.Session) {
		if d.cfg.killAt > 0 && d.cfg.killAt <= 1 && float64(done) >= d.cfg.killAt*float64(total) {
			once.Do(func() { go d.killLeader(ctx, done, s) })
		}
		reconnects := s.Stats().Reconnects
		d.mu.Lock()
		defer d.mu.Unlock()
		d.done, d.sessRecon = done, reconnects
		// The first result after the kill that came through a new stream:
		// results already buffered before the kill do not count.
		if !d.killTime.IsZero() && d.firstAfter == 0 && reconnects > d.reconnects {
			d.firstAfter = time.Since(d.killTime)
		}
	}
}

func (d *demo) killLeader(ctx context.Context, done int, s *client.Session) {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	st, err := d.client.ClusterStatus(sctx)
	cancel()
	if err != nil {
		d.logf("cannot find the leader to kill: %v", err)
		return
	}
	n := d.nodeByID(st.GetLeaderId())
	if n == nil {
		d.logf("leader %q is not one of the demo's nodes", st.GetLeaderId())
		return
	}
	pid := n.pid()
	d.mu.Lock()
	d.reconnects = s.Stats().Reconnects
	d.killed, d.killTime, d.killDone = n.name, time.Now(), done
	d.mu.Unlock()
	if err := n.signal(syscall.SIGKILL); err != nil {
		d.logf("kill failed: %v", err)
		return
	}
	<-n.exited()
	d.logf("killed the leader %s (pid %d) with SIGKILL at %d/%d results", n.name, pid, done, d.cfg.tasks)
	if ctx.Err() != nil {
		return
	}
	if err := n.start(); err != nil {
		d.logf("restart of %s failed: %v", n.name, err)
		return
	}
	d.mu.Lock()
	d.restarted = true
	d.mu.Unlock()
	d.logf("restarted %s (pid %d) from %s", n.name, n.pid(), filepath.Join(d.cfg.dir, n.name))
}

// showProgress redraws the progress bar a few times a second until stop
// is closed, then draws its last state.
func (d *demo) showProgress(stop <-chan struct{}) {
	update := func() {
		d.mu.Lock()
		done, extra := d.done, fmt.Sprintf("reconnects %d", d.sessRecon)
		d.mu.Unlock()
		d.progress.Update(done, extra)
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		update()
		select {
		case <-stop:
			update()
			d.progress.Finish()
			return
		case <-t.C:
			d.progress.Tick()
		}
	}
}

func (d *demo) workload(ctx context.Context) (bool, error) {
	m := pricer.DefaultMarket
	d.logf("pricing a European call and put (S0=%g K=%g r=%g sigma=%g T=%g): %d tasks of %d paths, in batches of 100",
		m.S0, m.K, m.R, m.Sigma, m.T, d.cfg.tasks, d.cfg.paths)
	d.progress.Start(d.cfg.tasks)
	stop, shown := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(shown)
		d.showProgress(stop)
	}()
	sum, err := pricer.Run(ctx, d.client, pricer.Config{
		Market: m, Tasks: d.cfg.tasks, Paths: d.cfg.tasks * d.cfg.paths, BatchSize: 100,
		Seed: uint64(time.Now().UnixNano()), OnResult: d.onResult(ctx), Logger: slog.New(slog.DiscardHandler),
	})
	close(stop)
	<-shown
	if err != nil && errors.Is(err, context.Canceled) {
		return false, err
	}
	fmt.Fprintln(d.out)
	fmt.Fprintln(d.out, "=== gridd demo summary ===")
	sum.Print(d.out)
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.killed == "":
		fmt.Fprintln(d.out, "leader kill         none")
	default:
		fmt.Fprintf(d.out, "leader killed      %s at %.2fs, after %d results (restarted: %v)\n",
			d.killed, d.killTime.Sub(d.start).Seconds(), d.killDone, d.restarted)
		if d.firstAfter > 0 {
			fmt.Fprintf(d.out, "kill -> 1st result %s\n", d.firstAfter.Round(time.Millisecond))
		} else {
			fmt.Fprintln(d.out, "kill -> 1st result none seen")
		}
	}
	if err != nil {
		return false, err
	}
	return sum.OK(), nil
}
