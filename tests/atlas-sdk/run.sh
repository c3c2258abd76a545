#!/usr/bin/env bash
# The official Atlas Go SDK as a judge of atlas-sim: moto (scripts/testenv.sh), atlas-sim on a free port with
# tests/atlas-sdk/seed.yaml and --aws-endpoint moto, then cmd/sdk-judge with a digest API key and with a
# service account. Exits non-zero when any call fails. `make test-sdk` runs it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

if [ -z "${MOTO_ENDPOINT:-}" ]; then
  bash scripts/testenv.sh up >&2
  eval "$(bash scripts/testenv.sh env)"
fi
: "${MOTO_ENDPOINT:?MOTO_ENDPOINT is not set}"

work="$(mktemp -d)"
sim_pid=""
cleanup() {
  if [ -n "$sim_pid" ] && kill -0 "$sim_pid" 2>/dev/null; then
    kill "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The judge: pinned module (go.sum), local toolchain, never a go.work.
(
  cd tests/atlas-sdk
  GOWORK=off GOTOOLCHAIN=local GOFLAGS="-mod=readonly -trimpath" CGO_ENABLED=0 \
    go build -o "$work/sdk-judge" ./cmd/sdk-judge
)

cargo build -q -p atlas-sim --bin atlas-sim
target="${CARGO_TARGET_DIR:-$ROOT/target}"
"$target/debug/atlas-sim" serve --listen 127.0.0.1:0 --seed tests/atlas-sdk/seed.yaml \
  --aws-endpoint "$MOTO_ENDPOINT" --cluster-update-delay 3s >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!
url=""
for _ in $(seq 1 100); do
  url="$(sed -n 's/^atlas-sim listening on \(http:\/\/[^ ]*\).*/\1/p' "$work/sim.out" | head -n1)"
  [ -n "$url" ] && break
  kill -0 "$sim_pid" 2>/dev/null || { cat "$work/sim.err" >&2; echo "atlas-sim exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "atlas-sim did not print its URL" >&2; exit 1; }
echo "atlas-sim at $url, moto at $MOTO_ENDPOINT" >&2

# Throwaway credentials from tests/atlas-sdk/seed.yaml.
status=0
SDK_JUDGE_PUBLIC_KEY=sdkjudge SDK_JUDGE_PRIVATE_KEY=sdk-judge-private-key \
  "$work/sdk-judge" -url "$url" -auth digest -project sdk-judge -cluster Cluster0 -sharded-cluster Sharded0 || status=1
SDK_JUDGE_CLIENT_ID=mdb_sa_id_sdkjudge SDK_JUDGE_CLIENT_SECRET='mdb_sa_sk_sdk+judge/secret=' \
  "$work/sdk-judge" -url "$url" -auth oauth -project sdk-judge -cluster Cluster0 -sharded-cluster Sharded0 || status=1
if [ "$status" -ne 0 ]; then
  echo "--- atlas-sim stderr (tail) ---" >&2
  tail -n 20 "$work/sim.err" >&2 || true
fi
exit "$status"
