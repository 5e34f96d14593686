// Command pause is the pod sandbox ("pause") image's only program: it holds the pod's
// namespaces open until it is told to stop, and reaps orphaned children as PID 1 must.
//
// Kubernetes' own pause image cannot be pulled here (no registry), so hack/images/build.sh
// builds this one and containerd is told to use it as its sandbox image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	// PID 1 ignores signals it has no handler for: without these, SIGTERM would be lost.
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		os.Exit(0)
	}
}

// reap collects every exited child without blocking.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
