// Command pause is the Pod sandbox's process for tests/node, built here
// because no registry is reachable: like registry.k8s.io/pause, it holds the
// Pod's namespaces open, does nothing else, and exits on SIGINT or SIGTERM.
// Built static (CGO_ENABLED=0) into a one-layer OCI image by tests/node/images.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	// Reap children the way a PID 1 should, should any be left to it.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGCHLD)
	<-sig
}
