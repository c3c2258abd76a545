//go:build tools

// Package tools pins MongoDB's official Atlas Go SDK. Its module zip ships the whole Atlas
// Administration API v2 specification (openapi/atlas-api.yaml), the judge the simulator's tests
// validate against, and its admin package is the client the SDK judge drives the simulator with.
// go.sum fixes both by checksum; the module proxy's copy is cached in GOMODCACHE, outside the clone.
package tools

import (
	_ "go.mongodb.org/atlas-sdk/v20250312020/admin"
)
