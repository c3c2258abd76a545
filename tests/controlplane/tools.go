//go:build tools

// Package tools pins the upstream main packages built into the test control plane, so that
// go.mod/go.sum record every module they need and `go build` resolves them without network.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
