// Command kstatus prints what sigs.k8s.io/cli-utils/pkg/kstatus, the
// library Flux's kustomize-controller uses for health checks (`wait: true`,
// `healthChecks`), computes for one Kubernetes object: it reads the object
// as JSON on stdin (as the API server returned it) and prints
// {"status": "...", "message": "..."} on stdout.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	// As client-go decodes objects: integers stay int64.
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(raw); err != nil {
		fail("stdin is not a Kubernetes object as JSON: %v", err)
	}
	result, err := status.Compute(obj)
	if err != nil {
		fail("kstatus: %v", err)
	}
	out, _ := json.Marshal(map[string]string{
		"status":  result.Status.String(),
		"message": result.Message,
	})
	fmt.Println(string(out))
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(2)
}
