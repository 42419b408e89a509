// Command kstatus prints kstatus's verdict on Kubernetes objects: the status Flux, kpt and
// Config Sync compute (sigs.k8s.io/cli-utils/pkg/kstatus/status) to decide whether a
// resource is reconciled.
//
// It reads a JSON array of objects on stdin and writes a JSON array of
// {"status": ..., "message": ...} in the same order. An object kstatus cannot judge gets
// an "error" instead (the exit status stays 0: the other verdicts are still good).
// Input that is not a JSON array of objects exits 2.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

func compute(object map[string]interface{}) verdict {
	result, err := status.Compute(&unstructured.Unstructured{Object: object})
	if err != nil {
		return verdict{Error: err.Error()}
	}
	return verdict{Status: result.Status.String(), Message: result.Message}
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	var objects []map[string]interface{}
	// Whole numbers must become int64, as the API machinery decodes them: kstatus reads
	// metadata.generation with NestedInt64, which refuses encoding/json's float64.
	if err := utiljson.Unmarshal(data, &objects); err != nil {
		return fmt.Errorf("stdin is not a JSON array of objects: %w", err)
	}
	verdicts := make([]verdict, 0, len(objects))
	for _, object := range objects {
		verdicts = append(verdicts, compute(object))
	}
	return json.NewEncoder(out).Encode(verdicts)
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(2)
	}
}
