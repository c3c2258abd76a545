#!/usr/bin/env bash
# Tests of the Helm chart, the container image recipe and the GitOps folder (`make test-chart`).
#
#   tests/chart/run.sh            everything
#   CHART_TEST_CLUSTER=0 ...      skip the stage that needs the local control plane
#
# Stages: CRD copies in sync; Dockerfile (hadolint, image contract, dependency skeleton); helm lint
# for each value set; helm template + assertions (tests/chart/check_rendered.py); values that must be
# refused; kubectl kustomize of config/gitops; then on the local control plane
# (scripts/testenv.sh up): server-side dry-run of every rendered object and of config/gitops, and the
# chart's RBAC really applied in throwaway namespaces and probed with `kubectl auth can-i`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CHART="$ROOT/charts/atlas-encryption-operator"
HERE="$ROOT/tests/chart"
VALUES="$HERE/values"
RELEASE_NS="aeo-system" # check_rendered.py expects this namespace
PASSED=0
FAILED=0

log() { echo "test-chart: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}
ok() {
  PASSED=$((PASSED + 1))
  echo "ok: $*"
}
bad() {
  FAILED=$((FAILED + 1))
  echo "FAIL: $*" >&2
}
# run_counted CMD...: run a checker that prints one "ok:" line per check; add them to the tally.
run_counted() {
  local out rc=0
  out="$("$@" 2>&1)" || rc=$?
  echo "$out"
  PASSED=$((PASSED + $(grep -c '^ok:' <<<"$out" || true)))
  if [ $rc -ne 0 ]; then
    FAILED=$((FAILED + 1))
    die "$(basename "$2") failed"
  fi
}

OUT="$(mktemp -d)"
CLEANUP_CLUSTER=""
SUMMARY_DONE=""
summary() {
  SUMMARY_DONE=1
  echo "test-chart: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
on_exit() {
  local rc=$?
  if [ -n "$CLEANUP_CLUSTER" ]; then cleanup_cluster || true; fi
  rm -rf "$OUT"
  # An aborted run still ends with the closing line, counting the abort as a failure.
  if [ -z "$SUMMARY_DONE" ]; then echo "test-chart: $PASSED passed, $((FAILED > 0 ? FAILED : 1)) failed"; fi
  exit $rc
}
trap on_exit EXIT

HELM="$(bash "$ROOT/scripts/helm.sh")"
HADOLINT="$(bash "$ROOT/scripts/hadolint.sh")"
# PyYAML comes with the test virtualenv (moto needs it), the one scripts/testenv.sh uses too.
PY="$(bash "$ROOT/scripts/python-venv.sh")/bin/python"
"$PY" -c 'import yaml' 2>/dev/null || die "the test virtualenv has no PyYAML"
log "helm $("$HELM" version --template '{{ .Version }}'), $("$HADOLINT" --version)"

# --- CRD copies -------------------------------------------------------------------------------
log "CRDs: charts/atlas-encryption-operator/crds must be byte-identical copies of crds/"
if diff -r "$ROOT/crds" "$CHART/crds" >"$OUT/crds.diff"; then
  ok "chart crds/ is byte-identical to crds/ ($(ls "$ROOT/crds" | wc -l) files)"
else
  cat "$OUT/crds.diff" >&2
  bad "chart crds/ differs from crds/: run 'make chart-sync-crds' and commit"
fi

# --- Dockerfile -----------------------------------------------------------------------------------
log "Dockerfile: hadolint and the image contract"
if "$HADOLINT" "$ROOT/Dockerfile"; then ok "hadolint Dockerfile: no findings"; else bad "hadolint Dockerfile"; fi
run_counted python3 "$HERE/dockerfile_check.py" "$ROOT"

# --- helm lint ----------------------------------------------------------------------------------
log "helm lint"
for set in default namespaced-ha monitoring-irsa single-leader; do
  args=()
  [ "$set" = default ] || args=(-f "$VALUES/$set.yaml")
  if "$HELM" lint --strict "$CHART" --namespace "$RELEASE_NS" "${args[@]}" >"$OUT/lint-$set.log" 2>&1; then
    ok "helm lint --strict ($set values)"
  else
    cat "$OUT/lint-$set.log" >&2
    bad "helm lint --strict ($set values)"
  fi
done
if "$HELM" lint --strict "$CHART" --namespace "$RELEASE_NS" -f "$ROOT/config/samples/helm-values-production.yaml" >"$OUT/lint-prod.log" 2>&1; then
  ok "helm lint --strict (config/samples/helm-values-production.yaml)"
else
  cat "$OUT/lint-prod.log" >&2
  bad "helm lint --strict (config/samples/helm-values-production.yaml)"
fi

# --- helm template + assertions -----------------------------------------------------------------
log "helm template and assertions"
render() { # render NAME RELEASE NAMESPACE [helm args...]
  local name="$1" release="$2" ns="$3"
  shift 3
  "$HELM" template "$release" "$CHART" --namespace "$ns" "$@" >"$OUT/$name.yaml"
}
render default aeo "$RELEASE_NS"
for set in namespaced-ha monitoring-irsa single-leader; do
  render "$set" aeo "$RELEASE_NS" -f "$VALUES/$set.yaml"
done
for set in default namespaced-ha monitoring-irsa single-leader; do
  run_counted "$PY" "$HERE/check_rendered.py" "$set" "$OUT/$set.yaml"
done

for set in default namespaced-ha monitoring-irsa; do
  args=()
  [ "$set" = default ] || args=(-f "$VALUES/$set.yaml")
  # NOTES.txt is only rendered by install/upgrade; a client-side dry run needs no cluster.
  if "$HELM" install aeo "$CHART" --namespace "$RELEASE_NS" --dry-run=client "${args[@]}" >"$OUT/notes.log" 2>&1 &&
    grep -q "is installed as aeo-atlas-encryption-operator" "$OUT/notes.log"; then
    ok "NOTES.txt renders ($set values)"
  else
    cat "$OUT/notes.log" >&2
    bad "NOTES.txt ($set values)"
  fi
done

# --- values that must be refused ----------------------------------------------------------------
log "values the chart must refuse"
refuse() { # refuse FILE EXPECTED-TEXT
  if "$HELM" template aeo "$CHART" --namespace "$RELEASE_NS" -f "$VALUES/$1" >/dev/null 2>"$OUT/refuse.err"; then
    bad "$1 was accepted"
  elif grep -q -- "$2" "$OUT/refuse.err"; then
    ok "$1 refused: $2"
  else
    cat "$OUT/refuse.err" >&2
    bad "$1 refused without the expected message '$2'"
  fi
}
refuse bad-ha-without-lease.yaml "several operators without a Lease"
refuse bad-unknown-key.yaml "watchNamespace"
refuse bad-servicemonitor-without-service.yaml "needs metrics.service.enabled"

if [ "${CHART_TEST_CLUSTER:-1}" = 0 ]; then
  log "CHART_TEST_CLUSTER=0: skipping the control-plane stage"
  summary
  exit
fi

# --- on the local control plane -----------------------------------------------------------------
log "starting (or reusing) the local control plane"
bash "$ROOT/scripts/testenv.sh" up >&2
eval "$(bash "$ROOT/scripts/testenv.sh" env)"
command -v kubectl >/dev/null || die "kubectl is not on the testenv PATH"

log "config/gitops: kubectl kustomize"
kubectl kustomize "$ROOT/config/gitops" >"$OUT/gitops.yaml"
kinds="$(grep -E '^kind:' "$OUT/gitops.yaml" | sort | tr '\n' ' ')"
[ "$kinds" = "kind: ClusterEncryption kind: Namespace kind: ProjectEncryption kind: Secret " ] &&
  ok "kubectl kustomize config/gitops builds: $kinds" || bad "config/gitops renders: $kinds"
run_counted "$PY" "$HERE/check_gitops.py" "$ROOT/config/gitops" "$OUT/gitops.yaml" "$OUT"
for tool in argocd flux; do
  if "$HELM" template aeo "$CHART" --namespace "$RELEASE_NS" -f "$OUT/$tool-values.yaml" >/dev/null 2>"$OUT/$tool.err"; then
    ok "the chart values in config/gitops' $tool example render (values.schema.json accepts them)"
  else
    cat "$OUT/$tool.err" >&2
    bad "the chart values in config/gitops' $tool example"
  fi
done

suffix="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
NS="aeo-chart-$suffix"
NS_A="$NS-a"
NS_B="$NS-b"
NS_L="$NS-lease"
REL_CW="aeo-cw-$suffix"
REL_NS="aeo-ns-$suffix"
cleanup_cluster() {
  kubectl delete namespace "$NS" "$NS_A" "$NS_B" "$NS_L" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  kubectl delete clusterrole,clusterrolebinding -l "app.kubernetes.io/instance in ($REL_CW,$REL_NS)" \
    --ignore-not-found >/dev/null 2>&1 || true
}
CLEANUP_CLUSTER=1
kubectl create namespace "$NS" >/dev/null
kubectl create namespace "$NS_A" >/dev/null
kubectl create namespace "$NS_B" >/dev/null
kubectl create namespace "$NS_L" >/dev/null

# The operator's CRDs as the chart ships them, and this test's stand-ins for prometheus-operator's
# (cluster-scoped and shared with other runs, so applied idempotently and left in place).
kubectl apply --server-side --force-conflicts --field-manager=atlas-eo-test-chart \
  -f "$CHART/crds/" -f "$HERE/fixtures/monitoring-crds.yaml" >/dev/null
kubectl wait --for=condition=Established --timeout=60s \
  crd/projectencryptions.encryption.atlasops.dev crd/clusterencryptions.encryption.atlasops.dev \
  crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com >/dev/null
ok "CRDs from the chart are established on the apiserver"

dry_run() { # dry_run NAME FILE
  if kubectl apply --server-side --dry-run=server --field-manager=atlas-eo-test-chart -f "$2" >"$OUT/dry.log" 2>&1; then
    ok "server-side dry-run of $1 ($(grep -c . "$OUT/dry.log") objects)"
  else
    cat "$OUT/dry.log" >&2
    bad "server-side dry-run of $1"
  fi
}
log "server-side dry-run of every rendered object"
render cw "$REL_CW" "$NS" -f "$VALUES/monitoring-irsa.yaml"
render nsha "$REL_NS" "$NS" -f "$VALUES/namespaced-ha.yaml" --set "watchNamespaces={$NS_A,$NS_B}"
render default-dr "aeo-def-$suffix" "$NS"
render single-dr "aeo-sl-$suffix" "$NS" -f "$VALUES/single-leader.yaml" --set "leaderElection.namespace=$NS_L"
dry_run "cluster-wide + monitoring values" "$OUT/cw.yaml"
dry_run "namespaced HA values" "$OUT/nsha.yaml"
dry_run "default values" "$OUT/default-dr.yaml"
dry_run "single replica with a Lease elsewhere" "$OUT/single-dr.yaml"
"$PY" "$HERE/check_rendered.py" --set-namespace "$NS_A" "$OUT/gitops.yaml" >"$OUT/gitops-ns.yaml"
dry_run "config/gitops (in a throwaway namespace)" "$OUT/gitops-ns.yaml"

log "RBAC really applied, then probed with kubectl auth can-i"
RBAC_KINDS="ServiceAccount,ClusterRole,ClusterRoleBinding,Role,RoleBinding"
for f in cw nsha; do
  "$PY" "$HERE/check_rendered.py" --kinds "$RBAC_KINDS" "$OUT/$f.yaml" >"$OUT/$f-rbac.yaml"
  kubectl apply --server-side --field-manager=atlas-eo-test-chart -f "$OUT/$f-rbac.yaml" >/dev/null
done
ok "ServiceAccounts, (Cluster)Roles and bindings of both modes applied"

can() { # can yes|no RELEASE VERB RESOURCE [kubectl flags...]
  local want="$1" rel="$2"
  shift 2
  local sa="system:serviceaccount:$NS:$rel-atlas-encryption-operator" got mode=namespaced
  [ "$rel" != "$REL_CW" ] || mode=cluster-wide
  got="$(kubectl auth can-i --as="$sa" "$@" 2>/dev/null || true)"
  got="${got%%$'\n'*}"
  if [ "$got" = "$want" ]; then
    ok "$mode: can-i $* -> $got"
  else
    bad "as $sa: kubectl auth can-i $*: got '${got:-error}', want '$want'"
  fi
}
PE=projectencryptions.encryption.atlasops.dev
CE=clusterencryptions.encryption.atlasops.dev
EV=events.events.k8s.io
LEASE=leases.coordination.k8s.io

# Cluster-wide mode: any namespace, least privilege.
for ns in "$NS_A" default; do
  can yes "$REL_CW" get secrets -n "$ns"
  can yes "$REL_CW" patch "$PE" --subresource=status -n "$ns"
  can yes "$REL_CW" create "$EV" -n "$ns"
done
can yes "$REL_CW" list "$PE" --all-namespaces
can yes "$REL_CW" watch "$CE" --all-namespaces
can yes "$REL_CW" patch "$CE" -n "$NS_B"
can yes "$REL_CW" get "$CE" --subresource=status -n "$NS_B"
can no "$REL_CW" list secrets -n "$NS_A"
can no "$REL_CW" watch secrets --all-namespaces
can no "$REL_CW" create secrets -n "$NS_A"
can no "$REL_CW" delete "$PE" -n "$NS_A"
can no "$REL_CW" update "$PE" -n "$NS_A"
can no "$REL_CW" create "$CE" -n "$NS_A"
can no "$REL_CW" patch configmaps -n "$NS_A"
can no "$REL_CW" create events -n "$NS_A"
can no "$REL_CW" delete "$EV" -n "$NS_A"
can no "$REL_CW" create "$LEASE" -n "$NS"

# Namespaced HA mode: only the two watched namespaces, plus the one Lease in the release namespace.
for ns in "$NS_A" "$NS_B"; do
  can yes "$REL_NS" get secrets -n "$ns"
  can yes "$REL_NS" list "$PE" -n "$ns"
  can yes "$REL_NS" patch "$PE" --subresource=status -n "$ns"
  can yes "$REL_NS" patch "$CE" --subresource=status -n "$ns"
  can yes "$REL_NS" create "$EV" -n "$ns"
  can no "$REL_NS" list secrets -n "$ns"
  can no "$REL_NS" delete "$PE" -n "$ns"
done
can no "$REL_NS" get secrets -n "$NS"
can no "$REL_NS" get secrets -n default
can no "$REL_NS" list "$PE" --all-namespaces
can no "$REL_NS" get "$PE" -n "$NS"
can no "$REL_NS" create "$EV" -n default
can yes "$REL_NS" create "$LEASE" -n "$NS"
can yes "$REL_NS" get "$LEASE/atlas-encryption-operator" -n "$NS"
can yes "$REL_NS" update "$LEASE/atlas-encryption-operator" -n "$NS"
can no "$REL_NS" update "$LEASE/some-other-lease" -n "$NS"
can no "$REL_NS" delete "$LEASE/atlas-encryption-operator" -n "$NS"
can no "$REL_NS" create "$LEASE" -n "$NS_A"

cleanup_cluster
CLEANUP_CLUSTER=""
ok "throwaway namespaces and cluster roles deleted"

summary
