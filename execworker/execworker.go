// Package execworker runs gridd tasks as operating-system commands, so that a
// worker can be written in any language without an SDK: the task's payload is
// the command's stdin, its stdout is the result, and a non-zero exit status
// fails the attempt (the server retries the task or dead-letters it).
//
// Each task runs in a process group of its own. A timeout, or the end of the
// task's context (the worker's drain deadline, a broken stream), sends
// SIGTERM to the whole group and SIGKILL after a short grace, so that
// children of a shell (`sh -c 'a | b'`) die with it instead of running on.
package execworker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gridd/gridd/sdk/worker"
)

// Defaults for Config fields left at zero.
const (
	DefaultMaxOutput  = 4 << 20 // the server's default payload limit
	DefaultKillGrace  = 2 * time.Second
	DefaultStderrTail = 2 << 10
)

// Environment variables set for every task's command.
const (
	EnvTaskID    = "GRIDD_TASK_ID"
	EnvSessionID = "GRIDD_SESSION_ID"
	EnvAttempt   = "GRIDD_ATTEMPT"
)

// Shell is the shell commands run under when Config.Shell is set.
const Shell = "/bin/sh"

// Config says which command runs the tasks and how.
type Config struct {
	// Command is the command line, such as "python3 price.py".
	Command string
	// Shell runs Command with /bin/sh -c, so quoting, pipes and
	// redirections work. Without it Command is split on white space (no
	// quoting) and executed directly. DefaultShell gives the usual choice.
	Shell bool
	// Timeout bounds each task's run; 0 means no limit.
	Timeout time.Duration
	// MaxOutput is the most stdout bytes a task may produce; more fails the
	// attempt rather than returning a truncated result. Default 4 MiB.
	MaxOutput int64
	// KillGrace is the time between SIGTERM and SIGKILL when a task is
	// stopped; default 2 s.
	KillGrace time.Duration
	// StderrTail is how many trailing stderr bytes a failure's error
	// carries; default 2 KiB.
	StderrTail int
	// Dir is the commands' working directory; "" means the worker's.
	Dir string
	// Env is added to the worker's environment for every command.
	Env    []string
	Logger *slog.Logger
}

// DefaultShell reports whether command needs a shell by default: a command
// line with spaces has arguments, and users write them with shell quoting.
func DefaultShell(command string) bool {
	return strings.ContainsAny(strings.TrimSpace(command), " \t\n")
}

// Runner executes tasks with one command. It is safe for concurrent use:
// each Handle call starts its own process.
type Runner struct {
	cfg  Config
	argv []string
	log  *slog.Logger
}

// New checks cfg and returns a Runner. A command that cannot be found fails
// here, when the worker starts, rather than on every task.
func New(cfg Config) (*Runner, error) {
	if strings.TrimSpace(cfg.Command) == "" {
		return nil, errors.New("execworker: no command given")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("execworker: negative timeout %s", cfg.Timeout)
	}
	if cfg.MaxOutput < 0 {
		return nil, fmt.Errorf("execworker: negative output limit %d", cfg.MaxOutput)
	}
	if cfg.MaxOutput == 0 {
		cfg.MaxOutput = DefaultMaxOutput
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	if cfg.StderrTail <= 0 {
		cfg.StderrTail = DefaultStderrTail
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	argv := []string{Shell, "-c", cfg.Command}
	if !cfg.Shell {
		argv = strings.Fields(cfg.Command)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("execworker: %w", err)
	}
	argv[0] = path
	return &Runner{cfg: cfg, argv: argv, log: cfg.Logger.With("component", "execworker")}, nil
}

// Argv is the program and arguments each task runs.
func (r *Runner) Argv() []string { return append([]string(nil), r.argv...) }

// Handle runs the command for one task; it is a worker.Handler.
func (r *Runner) Handle(ctx context.Context, t worker.Task) ([]byte, error) {
	out, err := r.run(ctx, t)
	if err != nil {
		r.log.Info("task failed", "session", t.SessionID, "task", t.ID, "attempt", t.Attempt, "err", err)
		return nil, err
	}
	return out, nil
}

// errTimedOut marks the runner's own per-task deadline, to tell it from the
// end of the caller's context.
var errTimedOut = errors.New("task timed out")

func (r *Runner) run(ctx context.Context, t worker.Task) ([]byte, error) {
	if r.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, r.cfg.Timeout, errTimedOut)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return nil, r.stopped(ctx)
	}
	stdout := &cappedBuffer{max: r.cfg.MaxOutput}
	stderr := &tailBuffer{max: r.cfg.StderrTail}
	cmd := exec.Command(r.argv[0], r.argv[1:]...)
	cmd.Dir = r.cfg.Dir
	cmd.Env = append(append(os.Environ(), r.cfg.Env...),
		EnvTaskID+"="+t.ID, EnvSessionID+"="+t.SessionID, EnvAttempt+"="+strconv.Itoa(int(t.Attempt)))
	cmd.Stdin = bytes.NewReader(t.Payload)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A process group of its own: the stop signals reach every process the
	// command started, and a Ctrl-C at the worker's terminal reaches the
	// worker only, which drains and lets running tasks finish.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A descendant that escaped the group may hold stdout open after the
	// command exits; the grace bounds how long Wait waits for it.
	cmd.WaitDelay = r.cfg.KillGrace
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start %s: %w", r.argv[0], err)
	}
	pgid := cmd.Process.Pid
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	var err error
	select {
	case err = <-waited:
	case <-ctx.Done():
		// The group id is the leader's pid, which is not reused while the
		// leader is unreaped or a member of its group lives: the signals
		// hit no stranger.
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		grace := time.NewTimer(r.cfg.KillGrace)
		select {
		case <-waited:
		case <-grace.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-waited
		}
		grace.Stop()
		return nil, r.stopped(ctx)
	}
	if stdout.overflow {
		return nil, fmt.Errorf("output exceeds the %d-byte limit (--max-output); the result is not truncated, the attempt fails", r.cfg.MaxOutput)
	}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		return nil, withStderr(exitErr.String(), stderr)
	case errors.Is(err, exec.ErrWaitDelay):
		return nil, withStderr("command exited but a process it started kept its stdout open", stderr)
	case err != nil:
		return nil, fmt.Errorf("running %s: %w", r.argv[0], err)
	}
	return stdout.Bytes(), nil
}

// stopped is the error of a task whose context ended while it ran.
func (r *Runner) stopped(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), errTimedOut) {
		return fmt.Errorf("timed out after %s", r.cfg.Timeout)
	}
	return fmt.Errorf("stopped before it finished: %w", context.Cause(ctx))
}

// withStderr adds the tail of the command's stderr to what, which says how
// it ended ("exit status 3"): the last lines are usually the explanation.
func withStderr(what string, stderr *tailBuffer) error {
	// The error travels as a protobuf string, which must be valid UTF-8;
	// stderr may be anything, and the tail may start mid-character.
	tail := strings.TrimSpace(strings.ToValidUTF8(stderr.String(), "\uFFFD"))
	if tail == "" {
		return errors.New(what + " (stderr empty)")
	}
	return fmt.Errorf("%s; stderr: %s", what, tail)
}
