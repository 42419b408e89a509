//go:build tools

// Package tools keeps the Prometheus server and promtool in this wrapper module's requirements.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
