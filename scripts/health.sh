#!/usr/bin/env bash
# Status health checks: kstatus (the real library) and the shipped Argo CD Lua health check, over the
# status snapshots the e2e tests write (tests/common/snapshots.rs) and the committed fixtures.
#
#   scripts/health.sh test             everything `make test-health` runs (below, in order)
#   scripts/health.sh kstatus [DIR]    the kstatus checker over DIR (default: the snapshot directory)
#   scripts/health.sh lua [DIR]        config/argocd/health.lua over DIR, with Lua 5.1 and 5.4
#   scripts/health.sh gotest           the kstatus checker's own Go tests (over the fixtures)
#   scripts/health.sh generate         write config/argocd/argocd-cm-health.yaml from health.lua
#   scripts/health.sh check-generated  fail when that file is not what `generate` writes
#
# The snapshot directory is $STATUS_SNAPSHOT_DIR, else ${CARGO_TARGET_DIR:-<repo>/target}/status-snapshots
# (the rule the tests use). It must hold every snapshot listed in tests/kstatus/expected-snapshots.txt,
# each written within the last $STATUS_SNAPSHOT_MAX_AGE_MIN minutes (default 1440), so neither an empty
# nor a stale directory can pass. The kstatus checker is built once into the cache, keyed by the hash
# of its Go sources, go.mod, go.sum and the Go version; Lua and dkjson come from Debian when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ATLAS_EO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/atlas-encryption-operator}"
KSTATUS_DIR="$ROOT/tests/kstatus"
FIXTURES="$KSTATUS_DIR/testdata"
EXPECTED_LIST="$KSTATUS_DIR/expected-snapshots.txt"
HEALTH_LUA="$ROOT/config/argocd/health.lua"
CM_YAML="$ROOT/config/argocd/argocd-cm-health.yaml"
LUA_RUNNER="$ROOT/tests/argocd/health_test.lua"
KINDS=(ProjectEncryption ClusterEncryption)
GROUP="encryption.atlasops.dev"
MAX_AGE_MIN="${STATUS_SNAPSHOT_MAX_AGE_MIN:-1440}"

log() { echo "health: $*" >&2; }
# shellcheck source=scripts/apt.sh
source "$ROOT/scripts/apt.sh"
die() {
  log "error: $*"
  exit 1
}

snapshot_dir() {
  local d="${STATUS_SNAPSHOT_DIR:-}"
  if [ -z "$d" ]; then
    d="${CARGO_TARGET_DIR:-$ROOT/target}/status-snapshots"
  fi
  case "$d" in /*) ;; *) d="$ROOT/$d" ;; esac
  echo "$d"
}

# The cache key covers everything that decides the binary, as scripts/testenv.sh's build_key does.
build_key() {
  (
    cd "$KSTATUS_DIR"
    go env GOVERSION
    cat go.mod go.sum ./*.go
  ) | sha256sum | cut -c1-16
}

# Prints the path of the kstatus checker, building it into the cache when missing.
kstatus_bin() {
  command -v go >/dev/null || die "go is required for the kstatus checker (Go >= 1.25)"
  local key dir tmp
  key="$(build_key)"
  dir="$CACHE/kstatus-check-$key"
  if [ ! -x "$dir/kstatus-check" ]; then
    mkdir -p "$CACHE"
    exec 9>"$CACHE/kstatus-check.lock"
    flock 9
    if [ ! -x "$dir/kstatus-check" ]; then
      log "building the kstatus checker into $dir"
      tmp="$(mktemp -d "$CACHE/kstatus-check.tmp.XXXXXX")"
      if ! (cd "$KSTATUS_DIR" && GOWORK=off GOFLAGS="-mod=readonly -trimpath" CGO_ENABLED=0 \
        go build -o "$tmp/kstatus-check" . >&2); then
        rm -rf "$tmp"
        die "building the kstatus checker failed"
      fi
      rm -rf "$dir"
      mv "$tmp" "$dir"
    fi
    exec 9>&-
  fi
  echo "$dir/kstatus-check"
}

expected_names() {
  sed 's/#.*//; s/[[:space:]]*$//; s/^[[:space:]]*//' "$EXPECTED_LIST" | grep -v '^$'
}

# Fails when a listed snapshot is older than MAX_AGE_MIN minutes (the checkers name missing ones).
check_fresh() {
  local dir="$1" name stale=()
  [ -d "$dir" ] || die "no snapshot directory $dir: run the e2e tests first (make test-integration)"
  while read -r name; do
    [ -f "$dir/$name.json" ] || continue
    if [ -n "$(find "$dir/$name.json" -mmin "+$MAX_AGE_MIN")" ]; then stale+=("$name"); fi
  done < <(expected_names)
  if [ ${#stale[@]} -gt 0 ]; then
    die "${#stale[@]} snapshot(s) in $dir older than $MAX_AGE_MIN min: ${stale[*]} (run the e2e tests again)"
  fi
}

# An existing directory as an absolute path, so the fixtures are recognised however they are named.
absdir() {
  if [ -d "$1" ]; then (cd "$1" && pwd); else echo "$1"; fi
}

cmd_kstatus() {
  local dir bin
  dir="$(absdir "${1:-$(snapshot_dir)}")"
  bin="$(kstatus_bin)"
  if [ "$dir" = "$FIXTURES" ]; then
    "$bin" -min "$(find "$FIXTURES" -maxdepth 1 -name '*.json' | wc -l)" -require-lag "$dir"
  else
    "$bin" -min "$(expected_names | wc -l)" -expect-list "$EXPECTED_LIST" -require-lag "$dir"
  fi
}

lua_ready() {
  local v
  for v in 5.1 5.4; do
    command -v "lua$v" >/dev/null || apt_install "lua$v" || die "could not install lua$v"
  done
  if ! lua5.1 -e 'require("dkjson")' 2>/dev/null || ! lua5.4 -e 'require("dkjson")' 2>/dev/null; then
    apt_install lua-dkjson || die "could not install lua-dkjson"
  fi
}

cmd_lua() {
  local dir min files v
  dir="$(absdir "${1:-$(snapshot_dir)}")"
  lua_ready
  [ -d "$dir" ] || die "no snapshot directory $dir: run the e2e tests first (make test-integration)"
  if [ "$dir" = "$FIXTURES" ]; then min=1; else min="$(expected_names | wc -l)"; fi
  mapfile -t files < <(find "$dir" -maxdepth 1 -name '*.json' | sort)
  # 5.1 is the dialect of Argo CD's gopher-lua; 5.4 catches what only a newer Lua would accept.
  for v in 5.1 5.4; do
    "lua$v" "$LUA_RUNNER" "$HEALTH_LUA" --min "$min" "${files[@]}"
  done
}

cmd_gotest() {
  command -v go >/dev/null || die "go is required for the kstatus checker's tests (Go >= 1.25)"
  log "go test in tests/kstatus (the checker's own tests, over the committed fixtures)"
  (cd "$KSTATUS_DIR" && GOWORK=off GOFLAGS=-mod=readonly go test -count=1 ./...)
}

render_cm() {
  local kind
  cat <<YAML
# Argo CD health checks for the operator's resources, as an argocd-cm patch: merge it into your
# argocd-cm (kustomize \`patches:\`, or the Argo CD Helm chart's configs.cm) rather than applying it
# over an existing one. See docs/gitops.md.
# GENERATED from config/argocd/health.lua by \`scripts/health.sh generate\`: do not edit by hand.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
YAML
  for kind in "${KINDS[@]}"; do
    echo "  resource.customizations.health.${GROUP}_${kind}: |"
    awk '{ if ($0 == "") print ""; else print "    " $0 }' "$HEALTH_LUA"
  done
}

cmd_generate() {
  render_cm >"$CM_YAML.tmp"
  mv "$CM_YAML.tmp" "$CM_YAML"
  log "wrote ${CM_YAML#"$ROOT"/}"
}

cmd_check_generated() {
  if ! diff -u "$CM_YAML" <(render_cm) >&2; then
    die "${CM_YAML#"$ROOT"/} is not what config/argocd/health.lua generates: run 'make argocd-health' and commit"
  fi
  log "${CM_YAML#"$ROOT"/} matches config/argocd/health.lua"
}

cmd_test() {
  local dir
  dir="$(snapshot_dir)"
  cmd_check_generated
  cmd_gotest
  log "kstatus over the committed fixtures (${FIXTURES#"$ROOT"/})"
  cmd_kstatus "$FIXTURES"
  log "Argo CD health.lua over the committed fixtures"
  cmd_lua "$FIXTURES"
  log "the e2e snapshots in $dir"
  check_fresh "$dir"
  log "kstatus over the e2e snapshots"
  cmd_kstatus "$dir"
  log "Argo CD health.lua over the e2e snapshots"
  cmd_lua "$dir"
  log "all health checks passed"
}

case "${1:-}" in
test) cmd_test ;;
kstatus) cmd_kstatus "${2:-}" ;;
lua) cmd_lua "${2:-}" ;;
gotest) cmd_gotest ;;
generate) cmd_generate ;;
check-generated) cmd_check_generated ;;
*)
  sed -n '2,17s/^# \{0,1\}//p' "$0" >&2
  exit 2
  ;;
esac
