//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is a child process in its own process group, so that a signal to
// the group reaches anything it started too, and the terminal's Ctrl-C
// reaches only the demo, which then stops its children in order.
type proc struct {
	name string
	bin  string
	args []string
	logf string
	// nice lowers the process's CPU priority; set before start.
	nice int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// procs owns every child the demo started; stopAll ends them all.
type procs struct {
	mu   sync.Mutex
	list []*proc
}

func (ps *procs) add(name, logf, bin string, args ...string) *proc {
	p := &proc{name: name, bin: bin, args: args, logf: logf}
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	return p
}

// start runs the process (again), appending its output to its log file.
func (p *proc) start() error {
	f, err := os.OpenFile(p.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: open log: %w", p.name, err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return fmt.Errorf("%s: start %s: %w", p.name, p.bin, err)
	}
	if p.nice != 0 {
		// PRIO_PGRP reaches every thread of the group; threads created
		// later inherit the value.
		_ = syscall.Setpriority(syscall.PRIO_PGRP, cmd.Process.Pid, p.nice)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(done)
	}()
	return nil
}

// pid is the running process's id (0 if never started).
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// exited is closed when the current run of the process ends.
func (p *proc) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return p.done
}

func (p *proc) running() bool {
	select {
	case <-p.exited():
		return false
	default:
		return true
	}
}

// signal sends sig to the process group.
func (p *proc) signal(sig syscall.Signal) error {
	pid := p.pid()
	if pid == 0 || !p.running() {
		return nil
	}
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%s: signal %v: %w", p.name, sig, err)
	}
	return nil
}

// stop asks the process to end (SIGTERM) and kills its group if it has not
// within grace.
func (p *proc) stop(grace time.Duration) {
	if !p.running() {
		return
	}
	_ = p.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited():
	case <-t.C:
		_ = p.signal(syscall.SIGKILL)
		<-p.exited()
	}
}

// stopAll stops the processes whose name starts with prefix (all when
// empty), in parallel.
func (ps *procs) stopAll(prefix string, grace time.Duration) {
	ps.mu.Lock()
	list := append([]*proc(nil), ps.list...)
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range list {
		if len(p.name) >= len(prefix) && p.name[:len(prefix)] == prefix {
			wg.Go(func() { p.stop(grace) })
		}
	}
	wg.Wait()
}
