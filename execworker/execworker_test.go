package execworker

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gridd/gridd/sdk/worker"
)

// These tests run real commands through /bin/sh and the coreutils.

func newRunner(t *testing.T, cfg Config) *Runner {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return r
}

func sh(t *testing.T, script string, edit ...func(*Config)) *Runner {
	t.Helper()
	cfg := Config{Command: script, Shell: true}
	for _, e := range edit {
		e(&cfg)
	}
	return newRunner(t, cfg)
}

func task(payload string) worker.Task {
	return worker.Task{SessionID: "s1", ID: "t1", Payload: []byte(payload), Attempt: 1}
}

// ctx bounds each test: a runner that failed to stop a command would hang
// the test until this deadline instead of forever.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestSuccessEchoesStdout(t *testing.T) {
	t.Parallel()
	out, err := sh(t, "tr a-z A-Z").Handle(ctx(t), task("hello, grid"))
	if err != nil || string(out) != "HELLO, GRID" {
		t.Fatalf("got %q, %v; want HELLO, GRID", out, err)
	}
}

// The payload is the whole of stdin, bytes as they are, larger than a pipe's
// buffer; an empty payload is an empty stdin, not a missing one.
func TestStdinIsThePayload(t *testing.T) {
	t.Parallel()
	payload := make([]byte, 300<<10)
	_, _ = rand.Read(payload)
	r := newRunner(t, Config{Command: "cat"}) // no spaces: executed directly
	if r.Argv()[0] == Shell {
		t.Fatalf("cat ran under the shell: %q", r.Argv())
	}
	out, err := r.Handle(ctx(t), worker.Task{ID: "big", Payload: payload})
	if err != nil || !bytes.Equal(out, payload) {
		t.Fatalf("cat returned %d bytes (%v), want the %d-byte payload back", len(out), err, len(payload))
	}
	out, err = sh(t, "wc -c").Handle(ctx(t), task(""))
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Fatalf("wc -c of an empty payload: %q, %v", out, err)
	}
	// A command that ignores stdin still succeeds.
	out, err = sh(t, "echo ignored").Handle(ctx(t), worker.Task{ID: "x", Payload: payload})
	if err != nil || string(out) != "ignored\n" {
		t.Fatalf("command ignoring stdin: %q, %v", out, err)
	}
}

func TestWithoutShellArgumentsAreSplitOnSpaces(t *testing.T) {
	t.Parallel()
	out, err := newRunner(t, Config{Command: "printf %s-%s a b"}).Handle(ctx(t), task(""))
	if err != nil || string(out) != "a-b" {
		t.Fatalf("got %q, %v", out, err)
	}
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	r := sh(t, `printf '%s|%s|%s|%s' "$GRIDD_TASK_ID" "$GRIDD_SESSION_ID" "$GRIDD_ATTEMPT" "$EXTRA"`,
		func(c *Config) { c.Env = []string{"EXTRA=yes"} })
	out, err := r.Handle(ctx(t), worker.Task{SessionID: "sess-9", ID: "task-42", Attempt: 3})
	if want := "task-42|sess-9|3|yes"; err != nil || string(out) != want {
		t.Fatalf("got %q, %v; want %q", out, err, want)
	}
}

func TestNonZeroExitFailsWithStatusAndStderr(t *testing.T) {
	t.Parallel()
	out, err := sh(t, `echo 'partial result'; echo "cannot price $(cat)" >&2; exit 3`).Handle(ctx(t), task("XYZ"))
	if err == nil {
		t.Fatalf("exit 3 succeeded with %q", out)
	}
	if msg := err.Error(); !strings.Contains(msg, "exit status 3") || !strings.Contains(msg, "cannot price XYZ") {
		t.Fatalf("error %q lacks the exit status or stderr", msg)
	}
	_, err = sh(t, "exit 1").Handle(ctx(t), task(""))
	if err == nil || !strings.Contains(err.Error(), "exit status 1 (stderr empty)") {
		t.Fatalf("exit 1 without stderr: %v", err)
	}
	_, err = sh(t, "kill -9 $$").Handle(ctx(t), task(""))
	if err == nil || !strings.Contains(err.Error(), "signal: killed") {
		t.Fatalf("a command killed by a signal: %v", err)
	}
}

// Only the end of stderr is kept, and it is valid UTF-8 whatever the
// command wrote (the error travels as a protobuf string).
func TestStderrTail(t *testing.T) {
	t.Parallel()
	r := sh(t, `i=0; while [ $i -lt 500 ]; do echo "noise line $i" >&2; i=$((i+1)); done; printf '\377\376' >&2; echo 'the real reason' >&2; exit 2`)
	_, err := r.Handle(ctx(t), task(""))
	if err == nil {
		t.Fatal("exit 2 succeeded")
	}
	msg := err.Error()
	if !strings.HasSuffix(msg, "the real reason") || !strings.Contains(msg, "stderr: ...") {
		t.Fatalf("error does not end with stderr's tail: %q", msg)
	}
	if strings.Contains(msg, "noise line 1\n") || len(msg) > DefaultStderrTail+100 {
		t.Fatalf("error is not limited to stderr's tail (%d bytes)", len(msg))
	}
	if !utf8.ValidString(msg) {
		t.Fatalf("error is not valid UTF-8: %q", msg)
	}
}

func TestTimeoutKillsTheCommand(t *testing.T) {
	t.Parallel()
	r := sh(t, "sleep 30", func(c *Config) { c.Timeout = 200 * time.Millisecond })
	_, err := r.Handle(ctx(t), task(""))
	if err == nil || err.Error() != "timed out after 200ms" {
		t.Fatalf("got %v, want timed out after 200ms", err)
	}
}

// A command that ignores SIGTERM gets SIGKILL after the grace, and so do
// the processes it started: the whole group goes. (A timeout and the end of
// the task's context stop a command the same way.)
func TestStopKillsTheProcessGroup(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	r := sh(t, `trap '' TERM; sleep 30 & echo $! > `+pidFile+`.tmp; mv `+pidFile+`.tmp `+pidFile+`; wait`,
		func(c *Config) { c.KillGrace = 100 * time.Millisecond })
	c, cancel := context.WithCancel(ctx(t))
	done := make(chan error, 1)
	go func() {
		_, err := r.Handle(c, task(""))
		done <- err
	}()
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(pidFile)
		if err == nil {
			if pid, err = strconv.Atoi(strings.TrimSpace(string(data))); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command did not record its child: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "stopped before it finished") {
		t.Fatalf("got %v, want stopped before it finished", err)
	}
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the command's child %d outlived it", pid)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// alive reports whether pid runs; a zombie (killed, not reaped yet by an
// init that may never reap) does not.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !os.IsNotExist(err)
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// When the task's context ends (the worker's drain deadline, a broken
// stream) the command is stopped and the attempt fails.
func TestCancelStopsTheCommand(t *testing.T) {
	t.Parallel()
	c, cancel := context.WithCancel(ctx(t))
	r := sh(t, "echo started; sleep 30")
	done := make(chan error, 1)
	go func() {
		_, err := r.Handle(c, task(""))
		done <- err
	}()
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "stopped before it finished") {
		t.Fatalf("got %v, want stopped before it finished", err)
	}
}

func TestOutputLimit(t *testing.T) {
	t.Parallel()
	limit := func(n int64) func(*Config) { return func(c *Config) { c.MaxOutput = n } }
	out, err := sh(t, "head -c 1000 /dev/zero", limit(1000)).Handle(ctx(t), task(""))
	if err != nil || len(out) != 1000 {
		t.Fatalf("output at the limit: %d bytes, %v", len(out), err)
	}
	out, err = sh(t, "head -c 1001 /dev/zero", limit(1000)).Handle(ctx(t), task(""))
	if err == nil || !strings.Contains(err.Error(), "1000-byte limit") {
		t.Fatalf("output over the limit: %d bytes, %v; want a failure", len(out), err)
	}
	// A command that writes forever is stopped by the closed pipe.
	_, err = sh(t, "yes", limit(1<<20)).Handle(ctx(t), task(""))
	if err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("endless output: %v", err)
	}
}

func TestNewChecksTheCommand(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{Command: "  "},
		{Command: "no-such-command-gridd"},
		{Command: "no-such-command-gridd arg"},
		{Command: "cat", Timeout: -time.Second},
		{Command: "cat", MaxOutput: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	if !DefaultShell("python3 price.py") || DefaultShell("  ./price  ") {
		t.Error("DefaultShell: want a shell for command lines with arguments only")
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 4}
	for _, w := range []string{"ab", "cdefgh", "ij", "k"} {
		if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", w, n, err)
		}
	}
	if got := b.String(); got != "...hijk" {
		t.Fatalf("tail %q, want ...hijk", got)
	}
	b = &tailBuffer{max: 4}
	_, _ = b.Write([]byte("abc"))
	if got := b.String(); got != "abc" {
		t.Fatalf("short tail %q", got)
	}
}
