// Command coffer-node is a multi-call binary for Coffer's one-node cluster
// (tests/node): the real kubelet and kube-scheduler from the same
// k8s.io/kubernetes version as tests/envtest's API server.
//
//	coffer-node kubelet [KUBELET FLAGS...]
//	coffer-node kube-scheduler [KUBE-SCHEDULER FLAGS...]
//	coffer-node version
//
// Nothing is mocked: these are cmd/kubelet and cmd/kube-scheduler.
package main

import (
	"context"
	"fmt"
	"os"

	_ "time/tzdata" // as the upstream commands

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // as the upstream commands
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // as the upstream commands
	_ "k8s.io/component-base/metrics/prometheus/version"  // as the upstream commands
	utilversion "k8s.io/component-base/version"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

const usage = `usage:
  coffer-node kubelet [KUBELET FLAGS...]
  coffer-node kube-scheduler [KUBE-SCHEDULER FLAGS...]
  coffer-node version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	sub, args := os.Args[1], os.Args[2:]
	switch sub {
	case "kubelet":
		// As k8s.io/kubernetes/cmd/kubelet/kubelet.go.
		os.Args = append([]string{"kubelet"}, args...)
		os.Exit(cli.Run(kubelet.NewKubeletCommand(context.Background())))
	case "kube-scheduler", "scheduler":
		// As k8s.io/kubernetes/cmd/kube-scheduler/scheduler.go.
		os.Args = append([]string{"kube-scheduler"}, args...)
		os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
	case "version", "--version":
		fmt.Printf("kubernetes %s\n", utilversion.Get().GitVersion)
	default:
		fmt.Fprintf(os.Stderr, "coffer-node: unknown subcommand %q\n%s", sub, usage)
		os.Exit(2)
	}
}
