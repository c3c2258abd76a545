#!/usr/bin/env bash
# Runs schemathesis (pinned in tests/requirements.txt) against a freshly started atlas-sim over every
# operation it serves (`atlas-sim operations`), judged by the official Atlas specification from the Go
# SDK module pinned in tests/atlas-sdk (scripts/atlas-spec.sh), adapted only where the README's
# "Deviations from the official specification" says. Fails on any server error, schema violation or
# wrong content type.
#   ST_MAX_EXAMPLES (default 25) examples per operation; ST_SEED (default 1).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
CACHE="${ATLAS_EO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/atlas-encryption-operator}"
RUST_VERSION="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$ROOT/rust-toolchain.toml")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target-rust-$RUST_VERSION}"

log() { echo "schemathesis-sim: $*" >&2; }

SPEC_SRC="$(bash "$ROOT/scripts/atlas-spec.sh")"

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

"$CARGO_TARGET_DIR/debug/atlas-sim" operations >"$WORK/operations.txt"
"$VENV/bin/python" "$HERE/prepare_spec.py" "$SPEC_SRC" "$WORK/operations.txt" "$WORK/spec.json"
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
  --cluster-update-delay 0s --project-rate-limit 1000000,1000000,1 --org-rate-limit 1000000,1000000,1 \
  --publish-rate-limits >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$WORK/sim.out" 2>/dev/null && break
  sleep 0.1
done
URL="$(sed -n 's/.*listening on //p' "$WORK/sim.out")"
[ -n "$URL" ] || { log "atlas-sim did not start"; cat "$WORK/sim.err" >&2; exit 1; }
log "atlas-sim at $URL"

json_field() { "$VENV/bin/python" -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
GID=5c4e0000000000000000000a
# Snapshots, an alert, a role and a private endpoint, so the operations that read one by id reach
# their logic instead of answering 404 to every generated id.
RS_SNAPSHOT="$(curl -fsS -X POST "$URL/__sim/projects/$GID/clusters/Cluster0/snapshots" -d '{}' | json_field id)"
SHARDED_SNAPSHOT="$(curl -fsS -X POST "$URL/__sim/projects/$GID/clusters/Cluster0/snapshots" \
  -d '{"type":"shardedCluster"}' | json_field id)"
curl -fsS -X POST "$URL/__sim/projects/$GID/alerts" -d '{"eventTypeName":"AWS_ENCRYPTION_KEY_NEEDS_ROTATION"}' >/dev/null

TOKEN="$(curl -fsS -u mdb_sa_id_5c4e00000000000000000001:schemathesis-secret -d grant_type=client_credentials \
  "$URL/api/oauth/token" | json_field access_token)"
atlas_post() {
  curl -fsS -X POST -H "Authorization: Bearer $TOKEN" -H "Accept: application/vnd.atlas.2023-01-01+json" \
    -H "Content-Type: application/vnd.atlas.2023-01-01+json" "$URL/api/atlas/v2/groups/$GID$1" -d "$2"
}
ROLE_ID="$(atlas_post /cloudProviderAccess '{"providerName":"AWS"}' | json_field roleId)"
# A role of its own for DELETE, which would otherwise leave the other role operations only 404s.
DOOMED_ROLE_ID="$(atlas_post /cloudProviderAccess '{"providerName":"AWS"}' | json_field roleId)"
ENDPOINT_ID="$(atlas_post /encryptionAtRest/AWS/privateEndpoints '{"regionName":"US_EAST_1"}' | json_field id)"

SNAPSHOTS=/api/atlas/v2/groups/{groupId}/clusters/{clusterName}/backup/snapshots
cat >"$WORK/schemathesis.toml" <<TOML
[parameters]
"path.groupId" = "$GID"
"path.groupName" = "st-project"
"path.clusterName" = "Cluster0"
"path.roleId" = "$ROLE_ID"
"path.endpointId" = "$ENDPOINT_ID"

[[operations]]
include-path = "/api/atlas/v2/groups/{groupId}/cloudProviderAccess/{cloudProvider}/{roleId}"
parameters = { "path.roleId" = "$DOOMED_ROLE_ID" }

[[operations]]
include-path = "$SNAPSHOTS/{snapshotId}"
parameters = { "path.snapshotId" = "$RS_SNAPSHOT" }

[[operations]]
include-path = "$SNAPSHOTS/shardedCluster/{snapshotId}"
parameters = { "path.snapshotId" = "$SHARDED_SNAPSHOT" }
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
