package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridd/gridd/sdk/worker"
)

// Worker processes: SDK workers in processes of their own (this binary
// run as "jepsen worker"), so the kill-worker fault can SIGKILL one in the
// middle of its tasks, as a crashed worker host would die. Each reports
// on its standard output a '+' when a task starts and a '-' when it ends,
// so the harness knows which ones hold tasks; closing its standard input
// stops it gracefully.

// workerCommand is the hidden subcommand a worker process runs.
func workerCommand() *cobra.Command {
	var addrs, id string
	c := &cobra.Command{
		Use:    "worker",
		Short:  "run one SDK worker (started by the harness for the kill-worker fault)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if addrs == "" || id == "" {
				return errors.New("worker: --addrs and --id are required")
			}
			return runWorkerProcess(strings.Split(addrs, ","), id)
		},
	}
	c.Flags().StringVar(&addrs, "addrs", "", "comma-separated gRPC addresses of the nodes")
	c.Flags().StringVar(&id, "id", "", "worker id")
	return c
}

func runWorkerProcess(addrs []string, id string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The harness closes stdin to stop us, and dies with it closed.
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	var mu sync.Mutex
	mark := func(b byte) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = os.Stdout.Write([]byte{b})
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	return worker.Run(ctx, worker.Options{Addrs: addrs, WorkerID: id, Concurrency: 4, Logger: log,
		DrainTimeout: 5 * time.Second}, func(ctx context.Context, t worker.Task) ([]byte, error) {
		mark('+')
		defer mark('-')
		return handle(ctx, t)
	})
}

// procWorkers runs and kills the worker processes; it implements
// nemesis.Workers.
type procWorkers struct {
	exe   string
	addrs []string
	log   *slog.Logger

	mu    sync.Mutex
	procs []*proc // nil while not running
}

type proc struct {
	cmd   *exec.Cmd
	stdin io.Closer
	busy  atomic.Int64 // tasks running
	done  chan struct{}
}

func newProcWorkers(n int, addrs []string, log *slog.Logger) (*procWorkers, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("worker processes: find this program: %w", err)
	}
	return &procWorkers{exe: exe, addrs: addrs, log: log, procs: make([]*proc, n)}, nil
}

func (w *procWorkers) Len() int { return len(w.procs) }

func (w *procWorkers) Name(i int) string { return fmt.Sprintf("worker-p%d", i) }

// Busy returns how many tasks worker i is running (0 when it is down).
func (w *procWorkers) Busy(i int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p := w.procs[i]; p != nil {
		return int(p.busy.Load())
	}
	return 0
}

// Start starts worker i unless it runs.
func (w *procWorkers) Start(i int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p := w.procs[i]; p != nil {
		select {
		case <-p.done:
		default:
			return nil
		}
	}
	cmd := exec.Command(w.exe, "worker", "--addrs", strings.Join(w.addrs, ","),
		"--id", fmt.Sprintf("jepsen-p%d", i))
	cmd.Stderr = os.Stderr
	// Never outlive the harness, even if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", w.Name(i), err)
	}
	p := &proc{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	w.procs[i] = p
	go func() {
		r := bufio.NewReader(stdout)
		for {
			b, err := r.ReadByte()
			if err != nil {
				break
			}
			switch b {
			case '+':
				p.busy.Add(1)
			case '-':
				p.busy.Add(-1)
			}
		}
		err := cmd.Wait()
		p.busy.Store(0)
		close(p.done)
		if err != nil && !killed(err) {
			w.log.Warn("worker process ended", "worker", w.Name(i), "err", err)
		}
	}()
	return nil
}

func killed(err error) bool {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
	}
	return false
}

// Kill sends SIGKILL to worker i and waits until it is gone.
func (w *procWorkers) Kill(ctx context.Context, i int) error {
	w.mu.Lock()
	p := w.procs[i]
	w.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%s is not running", w.Name(i))
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %s: %w", w.Name(i), err)
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kill %s: %w", w.Name(i), ctx.Err())
	}
}

// StartAll starts every worker that is not running.
func (w *procWorkers) StartAll() error {
	var errs []error
	for i := range w.procs {
		errs = append(errs, w.Start(i))
	}
	return errors.Join(errs...)
}

// Stop stops every worker gracefully (they finish their tasks), killing
// those still running after timeout.
func (w *procWorkers) Stop(timeout time.Duration) {
	w.mu.Lock()
	procs := append([]*proc(nil), w.procs...)
	w.mu.Unlock()
	for _, p := range procs {
		if p != nil {
			_ = p.stdin.Close()
		}
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	expired := false
	for _, p := range procs {
		if p == nil {
			continue
		}
		if !expired {
			select {
			case <-p.done:
				continue
			case <-t.C:
				expired = true
			}
		}
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}
