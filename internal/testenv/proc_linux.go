package testenv

import "syscall"

// sysProcAttr has the kernel kill the server if the test binary dies without
// running Stop (a panic, a timeout, SIGKILL).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
