package main

import "syscall"

// sysProcAttr puts the child in its own process group and has the kernel
// kill it if the demo dies without cleaning up (kill -9 of the demo).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
