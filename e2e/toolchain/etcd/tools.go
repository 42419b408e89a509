//go:build tools

// Package tools keeps etcd's main package in this wrapper module's requirements.
package tools

import _ "go.etcd.io/etcd/server/v3"
