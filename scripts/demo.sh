#!/usr/bin/env bash
# The whole story on one machine: a real Kubernetes control plane and moto (scripts/testenv.sh), the
# Atlas simulator (atlas-sim) and the operator, then a ProjectEncryption taken from "waiting for the
# IAM trust policy" to Ready, three ClusterEncryptions, a key rotation and a key disabled in KMS.
#
#   scripts/demo.sh [up]    build, start everything, walk the story; leaves it running to look around
#   scripts/demo.sh down    stop the simulator and the operator, then the test environment
#
# Everything is fake and local: the Atlas API key is the simulator's seed (config/dev/atlas-sim-seed.yaml),
# AWS is moto with the "testing" credentials. Timeouts: DEMO_TIMEOUT (seconds per step, default 120),
# DEMO_CLUSTER_TIMEOUT (default 90). DEMO_BIN_DIR=dir skips the build and runs the binaries found there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/pidfile.sh
source "$ROOT/scripts/pidfile.sh"
CACHE="${ATLAS_EO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/atlas-encryption-operator}"
RUST_VERSION="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target-rust-$RUST_VERSION}"
BIN_DIR="${DEMO_BIN_DIR:-$CARGO_TARGET_DIR/release}"
TESTENV_DIR="${TESTENV_DIR:-$ROOT/.testenv}"
export TESTENV_DIR
DEMO_DIR="$TESTENV_DIR/demo"
NS=atlas-demo
PE=demo
REGION=eu-west-2
SEED="$ROOT/config/dev/atlas-sim-seed.yaml"
SAMPLES="$ROOT/config/samples"
TIMEOUT="${DEMO_TIMEOUT:-120}"
METRICS_PORT="${DEMO_METRICS_PORT:-9480}"
HEALTH_PORT="${DEMO_HEALTH_PORT:-9481}"
CLUSTER_TIMEOUT="${DEMO_CLUSTER_TIMEOUT:-90}"
# The seed's fake API key (it opens only the local simulator).
ATLAS_PUBLIC_KEY=demo-public-key
ATLAS_PRIVATE_KEY=demo-private-key-not-a-secret

if [ -t 1 ]; then
  B=$'\e[1m' DIM=$'\e[2m' G=$'\e[32m' Y=$'\e[33m' R=$'\e[31m' C=$'\e[36m' N=$'\e[0m'
else
  B="" DIM="" G="" Y="" R="" C="" N=""
fi
T0=$SECONDS
STEP=0
step() {
  STEP=$((STEP + 1))
  printf '\n%s== %d. %s%s %s(%ss)%s\n' "$B$C" "$STEP" "$*" "$N" "$DIM" "$((SECONDS - T0))" "$N"
}
say() { printf '   %s\n' "$*"; }
ok() { printf '   %s✔ %s%s\n' "$G" "$*" "$N"; }
warn() { printf '   %s⚠ %s%s\n' "$Y" "$*" "$N"; }
log() { printf '%sdemo: %s%s\n' "$DIM" "$*" "$N" >&2; }
indent() { sed 's/^/     /'; }

logs_tail() {
  local f
  for f in "$DEMO_DIR/operator.log" "$DEMO_DIR/atlas-sim.log"; do
    [ -f "$f" ] || continue
    printf '%s--- last lines of %s ---%s\n' "$R" "$f" "$N" >&2
    tail -n 40 "$f" >&2
  done
}
die() {
  printf '\n%sdemo: FAILED: %s%s\n' "$R$B" "$*" "$N" >&2
  if command -v kubectl >/dev/null && [ -n "${KUBECONFIG:-}" ]; then
    kubectl get pe,ce -n "$NS" -o wide >&2 2>&1 || true
  fi
  logs_tail
  printf '%sEverything is left running to inspect; stop it with: make demo-down%s\n' "$R" "$N" >&2
  exit 1
}

# The AWS side, as the customer would do it in their account: boto3 against moto.
aws_py() {
  MOTO_ENDPOINT="$MOTO_ENDPOINT" REGION="$REGION" "$VENV/bin/python" - "$@" <<'PY'
import json, os, sys
import boto3

endpoint, region = os.environ["MOTO_ENDPOINT"], os.environ["REGION"]
def client(service):
    return boto3.client(service, endpoint_url=endpoint, region_name=region,
                        aws_access_key_id="testing", aws_secret_access_key="testing")

def permission_policy(keys):
    return {"Version": "2012-10-17", "Statement": [{"Sid": "AtlasEncryptionAtRest", "Effect": "Allow",
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": keys}]}

def trust_policy(principal, external_id):
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal},
            "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": external_id}}}]}

cmd, args = sys.argv[1], sys.argv[2:]
iam, kms = client("iam"), client("kms")
if cmd == "create-key":
    meta = kms.create_key(Description=args[0])["KeyMetadata"]
    print(meta["Arn"])
elif cmd == "create-role":        # name key-arn: permissions on the key, trust only our own account
    name, key = args
    role = iam.create_role(RoleName=name, Description="Atlas Encryption at Rest (demo)",
                           AssumeRolePolicyDocument=json.dumps(trust_policy("arn:aws:iam::123456789012:root", "not-atlas-yet")))
    iam.put_role_policy(RoleName=name, PolicyName="atlas-kms", PolicyDocument=json.dumps(permission_policy([key])))
    print(role["Role"]["Arn"])
elif cmd == "allow-keys":         # name key-arn...: the permission policy now covers every key given
    iam.put_role_policy(RoleName=args[0], PolicyName="atlas-kms", PolicyDocument=json.dumps(permission_policy(args[1:])))
    print(json.dumps(permission_policy(args[1:]), indent=2))
elif cmd == "trust":              # name atlas-arn external-id
    iam.update_assume_role_policy(RoleName=args[0], PolicyDocument=json.dumps(trust_policy(args[1], args[2])))
elif cmd == "show-role":          # name: both policies as stored in IAM
    role = iam.get_role(RoleName=args[0])["Role"]
    doc = role["AssumeRolePolicyDocument"]
    print("trust policy:      " + json.dumps(doc if isinstance(doc, dict) else json.loads(doc)))
    for p in iam.list_role_policies(RoleName=args[0])["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=args[0], PolicyName=p)["PolicyDocument"]
        print(f"permission policy: " + json.dumps(doc if isinstance(doc, dict) else json.loads(doc)))
elif cmd == "disable-key":        # bare key id (moto answers 500 to an ARN here)
    kms.disable_key(KeyId=args[0])
    print(kms.describe_key(KeyId=args[0])["KeyMetadata"]["KeyState"])
else:
    sys.exit(f"unknown command {cmd}")
PY
}

jp() { kubectl get "$1" -n "$NS" "$2" -o "jsonpath=$3" 2>/dev/null || true; }
cond() { jp "$1" "$2" "{.status.conditions[?(@.type==\"$3\")].$4}"; }
snapshot() {
  say "${DIM}\$ kubectl get pe,ce -n $NS${N}"
  kubectl get pe,ce -n "$NS" 2>&1 | indent
}

# wait_until WHAT TIMEOUT PREDICATE PROGRESS: polls PREDICATE (a shell function) every second and shows
# PROGRESS's output as a live status line; returns 1 on timeout.
wait_until() {
  local what="$1" timeout="$2" pred="$3" progress="$4" start=$SECONDS last="" now
  while true; do
    if "$pred"; then
      [ -t 1 ] && printf '\r\e[K'
      return 0
    fi
    now="$($progress)"
    if [ -t 1 ]; then
      printf '\r\e[K   %s… %s (%ss): %s%s' "$DIM" "$what" "$((SECONDS - start))" "$now" "$N"
    elif [ "$now" != "$last" ]; then
      printf '   … %s (%ss): %s\n' "$what" "$((SECONDS - start))" "$now"
    fi
    last="$now"
    if [ $((SECONDS - start)) -ge "$timeout" ]; then
      [ -t 1 ] && printf '\n'
      return 1
    fi
    sleep 1
  done
}

pe_progress() {
  printf 'Ready=%s/%s RoleAuthorized=%s/%s KeyValid=%s/%s' \
    "$(cond pe $PE Ready status)" "$(cond pe $PE Ready reason)" \
    "$(cond pe $PE RoleAuthorized status)" "$(cond pe $PE RoleAuthorized reason)" \
    "$(cond pe $PE KeyValid status)" "$(cond pe $PE KeyValid reason)"
}
pe_converged() {
  [ "$(cond pe $PE Ready status)" = True ] &&
    [ "$(jp pe $PE '{.status.observedGeneration}')" = "$(jp pe $PE '{.metadata.generation}')" ]
}
ce_progress() {
  local c out=""
  for c in orders analytics sandbox; do
    out+="$c=$(cond ce "$c" Ready reason)/$(jp ce "$c" '{.status.provider}') "
  done
  printf '%s' "$out"
}
clusters_done() {
  [ "$(cond ce orders Ready status)" = True ] && [ "$(cond ce analytics Ready status)" = True ] &&
    [ "$(cond ce sandbox Stalled status)" = True ]
}

render() { # render SAMPLE SED-EXPRESSIONS...: a sample manifest with the demo's values
  local file="$1"
  shift
  local args=()
  for e in "$@"; do args+=(-e "$e"); done
  sed "${args[@]}" "$SAMPLES/$file"
}

start_sim() {
  local bin="$BIN_DIR/atlas-sim" deadline
  stop_pidfile "$DEMO_DIR/atlas-sim.pid"
  NO_COLOR=1 setsid "$bin" serve --listen 127.0.0.1:0 --aws-endpoint "$MOTO_ENDPOINT" --seed "$SEED" \
    --cluster-update-delay 3s </dev/null >"$DEMO_DIR/atlas-sim.log" 2>&1 &
  echo $! >"$DEMO_DIR/atlas-sim.pid"
  deadline=$((SECONDS + 30))
  until SIM_URL="$(grep -o 'atlas-sim listening on http://[0-9.:]*' "$DEMO_DIR/atlas-sim.log" | sed 's/.* on //')" &&
    [ -n "$SIM_URL" ] && curl -sf --max-time 2 "$SIM_URL/__sim/health" >/dev/null; do
    pidfile_alive "$DEMO_DIR/atlas-sim.pid" || die "atlas-sim exited (log: $DEMO_DIR/atlas-sim.log)"
    [ $SECONDS -lt $deadline ] || die "atlas-sim did not answer within 30s"
    sleep 0.3
  done
  echo "$SIM_URL" >"$DEMO_DIR/atlas-sim.url"
}

start_operator() {
  stop_pidfile "$DEMO_DIR/operator.pid"
  NO_COLOR=1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION="$REGION" \
    AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
    setsid "$BIN_DIR/atlas-encryption-operator" \
    --atlas-base-url "$SIM_URL" --watch-namespaces "$NS" --kms-endpoint-url "$MOTO_ENDPOINT" \
    --metrics-bind-address "127.0.0.1:$METRICS_PORT" --health-bind-address "127.0.0.1:$HEALTH_PORT" \
    --resync-period 30s --log-format text </dev/null >"$DEMO_DIR/operator.log" 2>&1 &
  echo $! >"$DEMO_DIR/operator.pid"
  local deadline=$((SECONDS + 30))
  until curl -sf --max-time 2 "http://127.0.0.1:$HEALTH_PORT/readyz" >/dev/null; do
    pidfile_alive "$DEMO_DIR/operator.pid" || die "the operator exited at start (log: $DEMO_DIR/operator.log)"
    [ $SECONDS -lt $deadline ] || die "the operator was not ready within 30s (log: $DEMO_DIR/operator.log)"
    sleep 0.3
  done
}

# A namespace left by an earlier run refers to Atlas roles of a simulator that is gone: start clean.
# Finalizers are dropped first, since no operator is running yet to carry them out.
clean_namespace() {
  kubectl get ns "$NS" >/dev/null 2>&1 || return 0
  log "removing namespace $NS left by an earlier run"
  local kind obj
  for kind in clusterencryptions projectencryptions; do
    for obj in $(kubectl get "$kind" -n "$NS" -o name 2>/dev/null); do
      kubectl patch -n "$NS" "$obj" --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    done
  done
  kubectl delete ns "$NS" --wait=true --timeout=90s >/dev/null || die "namespace $NS did not go away"
}

cmd_up() {
  step "Build the operator and the Atlas simulator (release, cached in $CARGO_TARGET_DIR)"
  local t=$SECONDS
  if [ -n "${DEMO_BIN_DIR:-}" ]; then
    say "DEMO_BIN_DIR is set: using the binaries in $BIN_DIR"
  else
    cargo build --release -p atlas-encryption-operator --bin atlas-encryption-operator \
      -p atlas-sim --bin atlas-sim || die "cargo build failed"
    ok "built in $((SECONDS - t))s"
  fi

  step "Start the local Kubernetes control plane and moto (scripts/testenv.sh up)"
  t=$SECONDS
  # A cold machine builds the Kubernetes binaries here (10-25 min on 2 cores); its progress shows.
  "$ROOT/scripts/testenv.sh" up 2>&1 | { grep -v '^  \|^Use it\|^or:\|^export \|^testenv is up' || true; } | indent ||
    die "scripts/testenv.sh up failed"
  # shellcheck disable=SC1091
  source "$TESTENV_DIR/env"
  VENV="$("$ROOT/scripts/python-venv.sh" 2>/dev/null)"
  mkdir -p "$DEMO_DIR"
  ok "kube-apiserver $(kubectl version -o json | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | tail -1), moto at $MOTO_ENDPOINT ($((SECONDS - t))s)"

  step "Install the CRDs and start atlas-sim and the operator"
  kubectl apply --server-side --force-conflicts -f crds/ | indent
  kubectl wait --for=condition=Established --timeout=60s \
    crd/projectencryptions.encryption.atlasops.dev crd/clusterencryptions.encryption.atlasops.dev >/dev/null
  stop_pidfile "$DEMO_DIR/operator.pid"
  clean_namespace
  start_sim
  ok "atlas-sim at $SIM_URL, seeded with project demo-project: orders (M10), analytics (M30), sandbox (M0)"
  start_operator
  ok "operator pid $(cat "$DEMO_DIR/operator.pid"), watching namespace $NS, ready: $(curl -s "http://127.0.0.1:$HEALTH_PORT/readyz") (log: $DEMO_DIR/operator.log)"

  step "In AWS (moto): a KMS key and an IAM role that may use it, but does not trust Atlas yet"
  local suffix role_name key1 role_arn
  suffix="$(date +%s)"
  role_name="atlas-kms-demo-$suffix"
  key1="$(aws_py create-key "atlas demo key 1")" || die "creating the KMS key in moto failed"
  role_arn="$(aws_py create-role "$role_name" "$key1")" || die "creating the IAM role in moto failed"
  say "KMS key:  $key1"
  say "IAM role: $role_arn (permission policy on the key, trust policy for our own account only)"

  step "Apply the Atlas credentials Secret and the ProjectEncryption (from config/samples/)"
  kubectl create namespace "$NS" | indent
  render atlas-api-key-secret.yaml \
    "s/REPLACE_WITH_ATLAS_PUBLIC_KEY/$ATLAS_PUBLIC_KEY/" "s/REPLACE_WITH_ATLAS_PRIVATE_KEY/$ATLAS_PRIVATE_KEY/" |
    kubectl apply -n "$NS" -f - | indent
  render projectencryption.yaml \
    "s/name: my-project-encryption/name: $PE/" "s/projectName: my-atlas-project/projectName: demo-project/" \
    "s#customerMasterKeyId: .*#customerMasterKeyId: $key1#" "s#roleArn: .*#roleArn: $role_arn#" |
    kubectl apply -n "$NS" -f - | indent

  step "The operator creates the Atlas role and waits for the IAM trust policy"
  role_known() { [ -n "$(jp pe $PE '{.status.role.externalId}')" ] && [ "$(cond pe $PE RoleAuthorized reason)" = AwaitingTrustPolicy ]; }
  wait_until "waiting for status.role and RoleAuthorized=False/AwaitingTrustPolicy" "$TIMEOUT" role_known pe_progress ||
    die "no Atlas role in the status after ${TIMEOUT}s"
  local atlas_arn external_id
  atlas_arn="$(jp pe $PE '{.status.role.atlasAwsAccountArn}')"
  external_id="$(jp pe $PE '{.status.role.externalId}')"
  ok "Atlas role $(jp pe $PE '{.status.role.roleId}'): trust $atlas_arn with external ID $external_id"
  snapshot
  say "${DIM}\$ kubectl describe projectencryption -n $NS $PE${N}  (status.role and the RoleAuthorized condition)"
  kubectl describe projectencryption -n "$NS" "$PE" |
    awk '/^  Role:$/ {on=1; print; next} on && !/^    / {on=0} on' | indent
  say "RoleAuthorized message: the policies the IAM role needs"
  cond pe $PE RoleAuthorized message | "$VENV/bin/python" -c '
import json, sys
text = sys.stdin.read()
print(text.split(" Give that")[0])
for label in ("trust policy: ", "permission policy: "):
    at = text.find(label)
    if at >= 0:
        doc, _ = json.JSONDecoder().raw_decode(text[at + len(label):])
        print(label.rstrip(": ") + ":")
        print(json.dumps(doc, indent=2))
' | indent || true

  step "The user updates the IAM role's trust policy in AWS (moto), as the status says"
  aws_py trust "$role_name" "$atlas_arn" "$external_id" || die "update_assume_role_policy failed"
  say "the role in IAM now:"
  aws_py show-role "$role_name" | indent
  wait_until "waiting for Ready=True" "$TIMEOUT" pe_converged pe_progress ||
    die "ProjectEncryption not Ready ${TIMEOUT}s after the trust policy was put in place"
  ok "role authorized: RoleAuthorized=$(cond pe $PE RoleAuthorized status)/$(cond pe $PE RoleAuthorized reason)"
  ok "key valid: KeyValid=$(cond pe $PE KeyValid status)/$(cond pe $PE KeyValid reason), status.key.valid=$(jp pe $PE '{.status.key.valid}')"
  snapshot

  step "Encrypt the clusters: ClusterEncryptions for orders (M10), analytics (M30) and sandbox (M0)"
  local c
  for c in orders analytics sandbox; do
    render clusterencryption.yaml "s/name: my-cluster-encryption/name: $c/" \
      "s/name: my-project-encryption/name: $PE/" "s/clusterName: Cluster0/clusterName: $c/"
    echo ---
  done | kubectl apply -n "$NS" -f - | indent
  local cluster_note="" clusters_ok=0
  # A reconciler that exists writes some status within seconds; without one nothing ever appears.
  ce_started() {
    [ -n "$(jp ce orders '{.status.conditions}')$(jp ce analytics '{.status.conditions}')$(jp ce sandbox '{.status.conditions}')" ]
  }
  if ! wait_until "waiting for the operator to pick up the ClusterEncryptions" 20 ce_started ce_progress; then
    cluster_note="ClusterEncryption support is not in this build yet: no status after 20s (src/controller/cluster.rs)"
    warn "$cluster_note; the demo goes on with the project key"
  elif wait_until "waiting for orders and analytics Ready, sandbox Stalled" "$CLUSTER_TIMEOUT" clusters_done ce_progress; then
    ok "orders: provider $(jp ce orders '{.status.provider}'), $(cond ce orders Ready reason)"
    ok "analytics: provider $(jp ce analytics '{.status.provider}'), $(cond ce analytics Ready reason)"
    ok "sandbox refused: $(cond ce sandbox Stalled reason): $(cond ce sandbox Stalled message)"
    clusters_ok=1
  else
    cluster_note="the clusters did not reach the expected state within ${CLUSTER_TIMEOUT}s: $(ce_progress)"
    warn "$cluster_note"
    tail -n 15 "$DEMO_DIR/operator.log" | indent
  fi
  snapshot

  step "Rotate the key: a new KMS key, allowed in the role's permission policy, then the spec patched"
  local key2
  key2="$(aws_py create-key "atlas demo key 2")" || die "creating the second KMS key failed"
  say "new KMS key: $key2"
  aws_py allow-keys "$role_name" "$key1" "$key2" >/dev/null || die "put_role_policy failed"
  say "role permission policy now allows both keys (the old one stays usable for existing snapshots)"
  say "${DIM}\$ kubectl patch pe $PE -n $NS --type merge -p '{\"spec\":{\"awsKms\":{\"customerMasterKeyId\":\"…\"}}}'${N}"
  kubectl patch pe "$PE" -n "$NS" --type merge \
    -p "{\"spec\":{\"awsKms\":{\"customerMasterKeyId\":\"$key2\"}}}" | indent
  rotated() { [ "$(jp pe $PE '{.status.key.customerMasterKeyId}')" = "$key2" ] && pe_converged; }
  wait_until "waiting for the new key in Atlas and Ready=True" "$TIMEOUT" rotated pe_progress ||
    die "the key rotation did not complete within ${TIMEOUT}s"
  ok "key in force: $(jp pe $PE '{.status.key.customerMasterKeyId}') since $(jp pe $PE '{.status.key.since}')"
  say "status.previousKeys:"
  kubectl get pe "$PE" -n "$NS" -o jsonpath='{range .status.previousKeys[*]}- {.customerMasterKeyId} replacedAt={.replacedAt} snapshotsUsingKey={.snapshotsUsingKey} safeToDelete={.safeToDelete}{"\n"}{end}' | indent
  if [ "$clusters_ok" = 1 ]; then
    clusters_back() { [ "$(cond ce orders Ready status)" = True ] && [ "$(cond ce analytics Ready status)" = True ]; }
    if wait_until "waiting for orders and analytics to be Ready on the new key" "$CLUSTER_TIMEOUT" clusters_back ce_progress; then
      ok "orders and analytics stay encrypted (provider AWS) through the rotation"
    else
      cluster_note="after the rotation the clusters did not come back to Ready within ${CLUSTER_TIMEOUT}s: $(ce_progress)"
      warn "$cluster_note"
    fi
  fi
  snapshot

  step "Someone disables the key in KMS; the operator notices"
  local key2_id="${key2##*/}"
  say "boto3 kms.disable_key(KeyId=\"$key2_id\") -> $(aws_py disable-key "$key2_id")"
  local nudged=0
  key_invalid() {
    if [ "$(cond pe $PE KeyValid status)" = False ]; then return 0; fi
    # Nothing changed in Kubernetes: the periodic re-check (--resync-period 30s) finds it; an
    # annotation makes the operator look now.
    if [ $((SECONDS - nudged)) -ge 15 ]; then
      kubectl annotate pe "$PE" -n "$NS" --overwrite "demo.atlasops.dev/nudge=$SECONDS" >/dev/null 2>&1 || true
      nudged=$SECONDS
    fi
    return 1
  }
  wait_until "waiting for KeyValid=False" "$TIMEOUT" key_invalid pe_progress ||
    die "the disabled key was not noticed within ${TIMEOUT}s"
  ok "KeyValid=False/$(cond pe $PE KeyValid reason): $(cond pe $PE KeyValid message)"
  ok "Ready=$(cond pe $PE Ready status)/$(cond pe $PE Ready reason), Degraded=$(cond pe $PE Degraded status)/$(cond pe $PE Degraded reason)"
  if [ "$clusters_ok" = 1 ]; then
    clusters_follow() {
      [ "$(cond ce orders Ready reason)" = ProjectStalled ] && [ "$(cond ce analytics Ready reason)" = ProjectStalled ] &&
        [ "$(cond ce sandbox ProjectReady reason)" = ProjectStalled ]
    }
    if wait_until "waiting for the clusters to follow their project" "$CLUSTER_TIMEOUT" clusters_follow ce_progress; then
      ok "orders and analytics: Stalled/ProjectStalled (Argo CD Degraded, Flux fails fast), still provider $(jp ce orders '{.status.provider}') in Atlas"
      ok "sandbox keeps its own reason: $(cond ce sandbox Ready reason)"
    else
      warn "the clusters did not follow their Stalled project within ${CLUSTER_TIMEOUT}s: $(ce_progress)"
    fi
  fi
  say "${DIM}\$ kubectl get events -n $NS --field-selector involvedObject.name=$PE${N}"
  kubectl get events -n "$NS" --field-selector "involvedObject.name=$PE" --sort-by=.lastTimestamp \
    -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message 2>&1 | cut -c1-150 | indent
  snapshot

  step "What Prometheus scrapes from the operator (/metrics)"
  curl -s "http://127.0.0.1:$METRICS_PORT/metrics" |
    grep -E '^atlas_encryption_operator_(key_age_seconds|key_valid|key_rotation_due|leader|reconciles_total|atlas_requests_total\{.*method="(PATCH|POST)")' |
    cut -c1-160 | indent

  printf '\n%s== Done in %ss.%s Everything keeps running so you can look around:\n' "$B$G" "$((SECONDS - T0))" "$N"
  cat <<EOF
   export KUBECONFIG=$KUBECONFIG
   export PATH=$TESTENV_BIN:\$PATH
   kubectl get pe,ce -n $NS
   kubectl describe projectencryption -n $NS $PE
   kubectl describe clusterencryption -n $NS orders
   kubectl get events -n $NS
   curl -s $SIM_URL/__sim/projects/6512a0f0c0ffee00000000d0/keyHistory    # the simulator's key history
   curl -s http://127.0.0.1:$METRICS_PORT/metrics | grep ^atlas_encryption_operator_   # the operator's metrics
   curl -s http://127.0.0.1:$HEALTH_PORT/readyz
   logs: $DEMO_DIR/operator.log
         $DEMO_DIR/atlas-sim.log
         $TESTENV_DIR/*.log
   stop everything: make demo-down
EOF
  if [ -n "$cluster_note" ]; then
    printf '%sNote: %s%s\n' "$Y" "$cluster_note" "$N"
  fi
}

cmd_down() {
  if [ -d "$DEMO_DIR" ]; then
    stop_pidfile "$DEMO_DIR/operator.pid"
    stop_pidfile "$DEMO_DIR/atlas-sim.pid"
    rm -rf "$DEMO_DIR"
    log "operator and atlas-sim stopped"
  fi
  "$ROOT/scripts/testenv.sh" down
}

case "${1:-up}" in
up) cmd_up ;;
down) cmd_down ;;
*)
  sed -n '2,10s/^# \{0,1\}//p' "$0" >&2
  exit 2
  ;;
esac
