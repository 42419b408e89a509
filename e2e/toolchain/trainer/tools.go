//go:build tools

// Package tools keeps Kubeflow Trainer's controller manager in this wrapper's requirements.
package tools

import (
	_ "github.com/kubeflow/trainer/v2/cmd/trainer-controller-manager"
)
