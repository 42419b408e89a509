//go:build tools

// Package tools keeps JobSet's manager (the module root's main package) in this wrapper's requirements.
package tools

import (
	_ "sigs.k8s.io/jobset"
)
