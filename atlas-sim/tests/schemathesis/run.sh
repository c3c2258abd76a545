#!/usr/bin/env bash
# Runs schemathesis (pinned in tests/requirements.txt) against a freshly started atlas-sim, with the official
# OpenAPI subset adapted only for the quirks listed in shared/reference §12 (see prepare_spec.py and the
# README's "schemathesis exclusions"). Fails on any server error, schema violation or wrong content type.
#   ST_MAX_EXAMPLES (default 25) examples per operation; ST_SEED (default 1).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
SPEC_SRC="$ROOT/../shared/reference/atlas-openapi-subset.yaml"
CACHE="${ATLAS_EO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/atlas-encryption-operator}"
RUST_VERSION="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$ROOT/rust-toolchain.toml")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target-rust-$RUST_VERSION}"

log() { echo "schemathesis-sim: $*" >&2; }

[ -f "$SPEC_SRC" ] || { log "missing $SPEC_SRC"; exit 1; }

if [ -f "$ROOT/scripts/python-venv.sh" ]; then
  VENV="$(bash "$ROOT/scripts/python-venv.sh")"
else
  VENV="$CACHE/venv-schemathesis"
  if [ ! -x "$VENV/bin/schemathesis" ]; then
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install -q "$(grep '^schemathesis==' "$ROOT/tests/requirements.txt")" >&2
  fi
fi

(cd "$ROOT" && cargo build -q -p atlas-sim --bin atlas-sim)
WORK="$(mktemp -d)"
SIM_PID=""
cleanup() {
  [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$VENV/bin/python" "$HERE/prepare_spec.py" "$SPEC_SRC" "$WORK/spec.json"
cat >"$WORK/seed.yaml" <<'YAML'
serviceAccounts:
  - {clientId: mdb_sa_id_5c4e00000000000000000001, clientSecret: schemathesis-secret, projects: [st-project]}
projects:
  - name: st-project
    id: 5c4e0000000000000000000a
    clusters:
      - {name: Cluster0, instanceSize: M10, providerName: AWS, regionName: US_EAST_1, backupEnabled: true}
YAML

"$CARGO_TARGET_DIR/debug/atlas-sim" serve --listen 127.0.0.1:0 --seed "$WORK/seed.yaml" \
  --cluster-update-delay 0s >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$WORK/sim.out" 2>/dev/null && break
  sleep 0.1
done
URL="$(sed -n 's/.*listening on //p' "$WORK/sim.out")"
[ -n "$URL" ] || { log "atlas-sim did not start"; cat "$WORK/sim.err" >&2; exit 1; }
log "atlas-sim at $URL"

# Snapshots and alerts so their GETs have something to return.
curl -fsS -X POST "$URL/__sim/projects/5c4e0000000000000000000a/clusters/Cluster0/snapshots" -d '{}' >/dev/null
curl -fsS -X POST "$URL/__sim/projects/5c4e0000000000000000000a/clusters/Cluster0/snapshots" -d '{"type":"shardedCluster"}' >/dev/null
curl -fsS -X POST "$URL/__sim/projects/5c4e0000000000000000000a/alerts" -d '{"eventTypeName":"AWS_ENCRYPTION_KEY_NEEDS_ROTATION"}' >/dev/null

TOKEN="$(curl -fsS -u mdb_sa_id_5c4e00000000000000000001:schemathesis-secret -d grant_type=client_credentials \
  "$URL/api/oauth/token" | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"

cat >"$WORK/schemathesis.toml" <<'TOML'
[parameters]
"path.groupId" = "5c4e0000000000000000000a"
"path.groupName" = "st-project"
"path.clusterName" = "Cluster0"
TOML

cd "$WORK"
# One worker: with two, hypothesis compiles strategy code on two threads at once, which CPython 3.11
# can fail with "SystemError: AST constructor recursion depth mismatch", a crash of the tool, not a
# finding about the simulator.
ATLAS_SIM_SPEC="$WORK/spec.json" PYTHONPATH="$HERE" SCHEMATHESIS_HOOKS=hooks \
  "$VENV/bin/schemathesis" --config-file "$WORK/schemathesis.toml" run "$WORK/spec.json" \
  --url "$URL" \
  -H "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance \
  --mode positive \
  --phases examples,coverage,fuzzing \
  --max-examples "${ST_MAX_EXAMPLES:-25}" \
  --seed "${ST_SEED:-1}" \
  --generation-database none \
  --workers 1 \
  --no-color
