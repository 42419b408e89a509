//go:build tools

// Package tools keeps Kueue's manager in this wrapper module's requirements.
package tools

import (
	_ "sigs.k8s.io/kueue/cmd/kueue"
)
