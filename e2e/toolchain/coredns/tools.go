//go:build tools

// Package tools keeps the coredns command (the module's root package) in this wrapper
// module's requirements.
package tools

import _ "github.com/coredns/coredns"
