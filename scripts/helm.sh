#!/usr/bin/env bash
# Builds (or reuses) the pinned helm binary and prints its path on stdout; everything else goes to stderr.
#
#   scripts/helm.sh            build if needed, print the path of the helm binary
#   scripts/helm.sh --version  print the pinned helm version
#
# No helm release binary can be downloaded on this project's machines, and no Debian, PyPI or npm
# package ships a working helm CLI, so helm is built from its Go module (helm.sh/helm/v4 on the Go
# module proxy) with `go install`. The binary lives outside the clone, keyed by version, so a warm
# machine reuses it: $ATLAS_EO_CACHE_DIR/helm-<version>/bin/helm. A cold build took 12 minutes on
# 2 cores shared with other builds (most of it compiling client-go and the Kubernetes API types).
set -euo pipefail

HELM_VERSION="v4.3.1"
HELM_MODULE="helm.sh/helm/v4"
CACHE="${ATLAS_EO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/atlas-encryption-operator}"
DIR="$CACHE/helm-$HELM_VERSION"
BIN="$DIR/bin/helm"

log() { echo "helm.sh: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

case "${1:-}" in
--version)
  echo "$HELM_VERSION"
  exit 0
  ;;
"") ;;
*)
  sed -n '2,5s/^# \{0,1\}//p' "$0" >&2
  exit 2
  ;;
esac

# The marker holds the version the binary reported after its build; a half-written bin/ never has it.
current() {
  [ -x "$BIN" ] && [ -f "$DIR/bin/.complete" ] && [ "$(cat "$DIR/bin/.complete")" = "$HELM_VERSION" ]
}

if current; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || die "go is required to build helm $HELM_VERSION from the Go module proxy (Go >= 1.26)"
command -v flock >/dev/null || die "flock (util-linux) is required"

mkdir -p "$DIR"
exec 9>"$DIR/build.lock"
flock 9
# Another process may have finished the build while this one waited for the lock.
if current; then
  echo "$BIN"
  exit 0
fi

tmp="$(mktemp -d "$DIR/bin.tmp.XXXXXX")"
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT

# helm's own Makefile stamps the version through ldflags; `go install` alone would report "v4.3".
ldflags="-s -w"
ldflags+=" -X $HELM_MODULE/internal/version.version=$HELM_VERSION"
ldflags+=" -X $HELM_MODULE/internal/version.metadata="
ldflags+=" -X $HELM_MODULE/internal/version.gitTreeState=clean"

log "building helm $HELM_VERSION from $HELM_MODULE (a cold build takes up to ~12 minutes on 2 cores)"
start=$SECONDS
(
  # GOTOOLCHAIN=local: never fetch another Go; GOWORK=off and a clean GOFLAGS: a caller's go.work or
  # -mod setting must not leak into `go install module@version`, which resolves helm's own go.mod.
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off GOFLAGS="-trimpath" GOBIN="$tmp"
  cd "$tmp"
  go install -p "${GO_BUILD_P:-2}" -ldflags "$ldflags" "$HELM_MODULE/cmd/helm@$HELM_VERSION" >&2
) || die "go install $HELM_MODULE/cmd/helm@$HELM_VERSION failed (helm $HELM_VERSION needs Go >= 1.26; this is $(go env GOVERSION))"

got="$("$tmp/helm" version --template '{{ .Version }}')" || die "the built helm does not run"
[ "$got" = "$HELM_VERSION" ] || die "built helm reports $got, expected $HELM_VERSION"
echo "$HELM_VERSION" >"$tmp/.complete"

rm -rf "$DIR/bin.old"
[ ! -d "$DIR/bin" ] || mv "$DIR/bin" "$DIR/bin.old"
mv "$tmp" "$DIR/bin"
trap - EXIT
rm -rf "$DIR/bin.old"
log "built helm $HELM_VERSION in $((SECONDS - start))s into $DIR/bin"
echo "$BIN"
