#!/usr/bin/env bash
# Prints the path of the official Atlas Administration API v2 specification (openapi/atlas-api.yaml)
# from the Go module pinned in tests/atlas-sdk (go.mod/go.sum: version and checksum). The Go module
# proxy's copy is downloaded once into GOMODCACHE, outside the clone, and verified against go.sum.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command -v go >/dev/null || { echo "atlas-spec: go is required to fetch the official Atlas SDK module" >&2; exit 1; }
dir="$(cd "$ROOT/tests/atlas-sdk" && GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
  go list -m -f '{{.Dir}}' go.mongodb.org/atlas-sdk/v20250312020)"
spec="$dir/openapi/atlas-api.yaml"
[ -f "$spec" ] || { echo "atlas-spec: $spec is missing from the module" >&2; exit 1; }
echo "$spec"
