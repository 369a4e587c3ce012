// Command coffer-envtest is a multi-call binary for Coffer's end-to-end tests:
//
//	coffer-envtest serve --dir DIR         etcd + kube-apiserver in-process, kube-controller-manager as a child
//	coffer-envtest controller-manager ...  kube-controller-manager (used by serve)
//	coffer-envtest kubectl ...             kubectl (also when invoked through a symlink named kubectl)
//	coffer-envtest version                 prints the Kubernetes and etcd versions built in
//
// Everything is the real code from the Kubernetes and etcd Go modules; nothing is mocked.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	_ "time/tzdata" // as cmd/kube-apiserver and cmd/kube-controller-manager

	"go.etcd.io/etcd/api/v3/version"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"          // as the upstream commands
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // as the upstream commands
	_ "k8s.io/component-base/metrics/prometheus/version"  // as the upstream commands
	utilversion "k8s.io/component-base/version"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"

	_ "k8s.io/client-go/plugin/pkg/client/auth" // as cmd/kubectl
)

const usage = `usage:
  coffer-envtest serve --dir DIR
  coffer-envtest kubectl [ARGS...]      (or invoke through a symlink named kubectl)
  coffer-envtest controller-manager [KUBE-CONTROLLER-MANAGER FLAGS...]
  coffer-envtest version
`

func main() {
	if strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe") == "kubectl" {
		runKubectl(os.Args[1:])
		return
	}
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	sub, args := os.Args[1], os.Args[2:]
	switch sub {
	case "serve":
		os.Exit(serveMain(args))
	case "kubectl":
		runKubectl(args)
	case "controller-manager", "kube-controller-manager":
		runControllerManager(args)
	case "version", "--version":
		fmt.Printf("kubernetes %s\netcd %s\n", utilversion.Get().GitVersion, version.Version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "coffer-envtest: unknown subcommand %q\n%s", sub, usage)
		os.Exit(2)
	}
}

// runKubectl mirrors k8s.io/kubernetes/cmd/kubectl/kubectl.go.
func runKubectl(args []string) {
	os.Args = append([]string{"kubectl"}, args...)
	logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		kubectlutil.CheckErr(err)
	}
	os.Exit(0)
}

// runControllerManager mirrors k8s.io/kubernetes/cmd/kube-controller-manager/controller-manager.go.
func runControllerManager(args []string) {
	os.Args = append([]string{"kube-controller-manager"}, args...)
	command := kcmapp.NewControllerManagerCommand()
	command.SetArgs(args)
	os.Exit(cli.Run(command))
}
