//go:build tools

// Package tools keeps the crane command in this wrapper module's requirements.
package tools

import _ "github.com/google/go-containerregistry/cmd/crane"
