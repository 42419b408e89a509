//go:build tools

// Package tools keeps kwok's command in this wrapper module's requirements.
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
