//go:build tools

// Package tools keeps kwok's commands in this wrapper module's requirements.
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
	_ "sigs.k8s.io/kwok/cmd/kwokctl"
)
