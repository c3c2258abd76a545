#!/usr/bin/env bash
# Local test ground: a real Kubernetes control plane (embedded etcd, kube-apiserver,
# kube-controller-manager) and moto as the AWS emulator, all on 127.0.0.1.
#
#   scripts/testenv.sh build    build (or reuse) the cached Kubernetes binaries
#   scripts/testenv.sh up       start everything (idempotent) and print how to use it
#   scripts/testenv.sh down     stop what `up` started and remove its state
#   scripts/testenv.sh status   exit 0 when everything answers, 1 otherwise
#   scripts/testenv.sh env      print the env file (source it: eval "$(scripts/testenv.sh env)")
#   scripts/testenv.sh restart-apiserver [SECONDS]
#                               stop kube-apiserver, stay down SECONDS (default 0), start it again
#                               with the same flags on the same port and data (reliability tests)
#
# Everything is built from package registries only: the binaries come from the Go module in
# tests/controlplane (k8s.io/kubernetes pinned there), moto from PyPI through scripts/python-venv.sh.
# Heavy artefacts are cached outside the clone so a warm machine skips them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_VERSION="v1.35.4"
MODULE_DIR="$ROOT/tests/controlplane"
CACHE="${ATLAS_EO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/atlas-encryption-operator}"
K8S_DIR="$CACHE/k8s-$K8S_VERSION"
BIN="$K8S_DIR/bin"
TESTENV_DIR="${TESTENV_DIR:-$ROOT/.testenv}"
BINARIES=(kube-apiserver kube-controller-manager kubectl etcd)
START_TIMEOUT="${TESTENV_START_TIMEOUT:-120}"

log() { echo "testenv: $*" >&2; }
# shellcheck source=scripts/apt.sh
source "$ROOT/scripts/apt.sh"
# shellcheck source=scripts/pidfile.sh
source "$ROOT/scripts/pidfile.sh"
STARTING=""
die() {
  log "error: $*"
  # A half-started environment would only mislead the next `status`; `up` starts clean anyway.
  if [ -n "$STARTING" ]; then stop_all; fi
  exit 1
}

# need CMD [DEBIAN_PACKAGE]: a fresh machine may lack small tools; fetch them from Debian.
need() {
  command -v "$1" >/dev/null || apt_install "${2:-$1}" || die "could not install ${2:-$1}"
}

# The cache key covers everything that decides the binaries' content, so a bumped go.sum or an
# edited etcd program rebuilds instead of silently reusing stale binaries.
build_key() {
  (
    cd "$MODULE_DIR"
    echo "$K8S_VERSION"
    cat go.mod go.sum tools.go cmd/etcd/main.go
  ) | sha256sum | cut -c1-16
}

binaries_current() {
  [ -f "$BIN/.build-key" ] && [ "$(cat "$BIN/.build-key")" = "$(build_key)" ] || return 1
  local b
  for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || return 1; done
}

cmd_build() {
  command -v go >/dev/null || die "go is required to build the Kubernetes binaries (Go >= 1.25; Debian's golang-go is too old)"
  mkdir -p "$K8S_DIR"
  exec 8>"$K8S_DIR/build.lock"
  flock 8
  if binaries_current; then
    log "binaries for $K8S_VERSION are cached in $BIN"
    return 0
  fi
  local key tmp start ldflags
  key="$(build_key)"
  tmp="$(mktemp -d "$K8S_DIR/bin.tmp.XXXXXX")"
  chmod 755 "$tmp"
  # An interrupted build leaves only bin.tmp.*, never a half-filled bin/.
  trap 'rm -rf "$tmp"' EXIT
  ldflags="-s -w"
  ldflags+=" -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=35"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=35"
  log "building ${BINARIES[*]} $K8S_VERSION (a cold build takes 10-25 min on 2 cores)"
  start=$SECONDS
  (
    cd "$MODULE_DIR"
    # GOWORK=off: this module must never join a go.work; -mod=mod would let go rewrite go.sum.
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly" GOWORK=off
    go build -p "${GO_BUILD_P:-2}" -tags selinux,notest -ldflags "$ldflags" -o "$tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kubectl \
      ./cmd/etcd
  )
  echo "$key" >"$tmp/.build-key"
  rm -rf "$BIN.old"
  [ ! -d "$BIN" ] || mv "$BIN" "$BIN.old"
  mv "$tmp" "$BIN"
  trap - EXIT
  rm -rf "$BIN.old"
  log "built in $((SECONDS - start))s into $BIN"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pid_alive() { pidfile_alive "$TESTENV_DIR/$1.pid"; }

# start NAME CMD...: detached from the caller's session and stdio, so a test binary, make or CI's
# pipe can exit while the control plane keeps running for the next run.
start() {
  local name="$1"
  shift
  # Close the lock descriptors: a daemon holding them would block every later `up`/`down`.
  setsid "$@" </dev/null >>"$TESTENV_DIR/$name.log" 2>&1 7>&- 8>&- &
  echo $! >"$TESTENV_DIR/$name.pid"
  # The command line, NUL-separated, so `restart-apiserver` starts exactly the same process again.
  printf '%s\0' "$@" >"$TESTENV_DIR/$name.cmd"
}

wait_for() {
  local what="$1" name="$2"
  shift 2
  local deadline=$((SECONDS + START_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if ! pid_alive "$name"; then
      tail -n 30 "$TESTENV_DIR/$name.log" >&2 || true
      die "$name exited before $what was ready (log: $TESTENV_DIR/$name.log)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 30 "$TESTENV_DIR/$name.log" >&2 || true
      die "$what not ready after ${START_TIMEOUT}s (log: $TESTENV_DIR/$name.log)"
    fi
    sleep 0.5
  done
}

apiserver_ready() {
  local port
  port="$(cat "$TESTENV_DIR/apiserver.port")"
  curl -sf --max-time 5 --cacert "$TESTENV_DIR/pki/ca.crt" \
    --cert "$TESTENV_DIR/pki/admin.crt" --key "$TESTENV_DIR/pki/admin.key" \
    "https://127.0.0.1:$port/readyz" | grep -qx ok
}

moto_ready() {
  curl -sf --max-time 5 -o /dev/null "http://127.0.0.1:$(cat "$TESTENV_DIR/moto.port")/moto-api/data.json"
}

healthy() {
  local p
  for p in etcd apiserver controller-manager moto; do pid_alive "$p" || return 1; done
  [ -f "$TESTENV_DIR/env" ] && apiserver_ready && moto_ready
}

# Every daemon is running but a probe timed out: a benchmark or a parallel suite is loading the
# machine. Probe again for up to 60 s before `up` would tear down a control plane others are using.
busy_but_alive() {
  local p deadline=$((SECONDS + 60))
  for p in etcd apiserver controller-manager moto; do pid_alive "$p" || return 1; done
  [ -f "$TESTENV_DIR/env" ] || return 1
  log "a probe timed out with every daemon running; probing again for up to 60 s"
  while [ $SECONDS -lt $deadline ]; do
    sleep 2
    healthy && return 0
  done
  return 1
}

make_pki() {
  local d="$TESTENV_DIR/pki"
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=atlas-eo-testenv-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
      -keyout apiserver.key -out apiserver.csr 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "extendedKeyUsage=serverAuth" \
      "basicConstraints=CA:FALSE" "keyUsage=digitalSignature,keyEncipherment" >server.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out apiserver.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=admin" \
      -keyout admin.key -out admin.csr 2>/dev/null
    printf '%s\n' "extendedKeyUsage=clientAuth" "basicConstraints=CA:FALSE" \
      "keyUsage=digitalSignature,keyEncipherment" >client.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile client.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr
    chmod 600 ./*.key
  )
}

write_kubeconfig() {
  local port="$1" d="$TESTENV_DIR/pki"
  local tmp="$TESTENV_DIR/kubeconfig.tmp"
  cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: atlas-eo-testenv
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 "$d/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 "$d/admin.crt")
    client-key-data: $(base64 -w0 "$d/admin.key")
contexts:
- name: atlas-eo-testenv
  context:
    cluster: atlas-eo-testenv
    user: admin
current-context: atlas-eo-testenv
EOF
  chmod 600 "$tmp"
  mv "$tmp" "$TESTENV_DIR/kubeconfig"
}

print_usage() {
  cat <<EOF
testenv is up (Kubernetes $K8S_VERSION, moto) in $TESTENV_DIR
  apiserver:  https://127.0.0.1:$(cat "$TESTENV_DIR/apiserver.port")
  moto:       http://127.0.0.1:$(cat "$TESTENV_DIR/moto.port")
  kubectl:    $BIN/kubectl
  logs:       $TESTENV_DIR/*.log
Use it from a shell with:
  source $TESTENV_DIR/env
or:
export KUBECONFIG=$TESTENV_DIR/kubeconfig
EOF
}

cmd_up() {
  mkdir -p "$TESTENV_DIR"
  TESTENV_DIR="$(cd "$TESTENV_DIR" && pwd)"
  exec 7>"$TESTENV_DIR/.lock"
  flock -w 600 7 || die "another testenv.sh holds $TESTENV_DIR/.lock"
  if healthy || busy_but_alive; then
    print_usage
    return 0
  fi
  local t0=$SECONDS
  # Half-started or crashed leftovers: start clean rather than guess which parts are usable.
  stop_all
  need curl
  need openssl
  need base64 coreutils
  need python3 python3-venv
  cmd_build
  local venv
  venv="$("$ROOT/scripts/python-venv.sh")"

  make_pki
  STARTING=1

  local etcd_port etcd_peer api_port moto_port
  etcd_port="$(free_port)"
  etcd_peer="$(free_port)"
  api_port="$(free_port)"
  moto_port="$(free_port)"
  echo "$api_port" >"$TESTENV_DIR/apiserver.port"
  echo "$moto_port" >"$TESTENV_DIR/moto.port"

  # moto boots in parallel with the control plane; it only needs to answer before `up` returns.
  start moto "$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port"

  mkdir -p "$TESTENV_DIR/etcd"
  start etcd "$BIN/etcd" --data-dir "$TESTENV_DIR/etcd" \
    --client-url "http://127.0.0.1:$etcd_port" --peer-url "http://127.0.0.1:$etcd_peer"
  wait_for "etcd" etcd curl -sf --max-time 2 "http://127.0.0.1:$etcd_port/health"

  local d="$TESTENV_DIR/pki"
  mkdir -p "$TESTENV_DIR/apiserver-certs"
  start apiserver "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --cert-dir="$TESTENV_DIR/apiserver-certs" \
    --tls-cert-file="$d/apiserver.crt" --tls-private-key-file="$d/apiserver.key" \
    --client-ca-file="$d/ca.crt" \
    --authorization-mode=RBAC \
    --service-account-issuer="https://127.0.0.1:$api_port/" \
    --service-account-key-file="$d/sa.pub" --service-account-signing-key-file="$d/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 --allow-privileged=true \
    --disable-admission-plugins=ServiceAccount \
    --profiling=false
  wait_for "kube-apiserver /readyz" apiserver apiserver_ready
  write_kubeconfig "$api_port"

  # Without the controller manager namespaces never finish terminating and ownerReferences are
  # never garbage-collected, which would make cleanup and cascade tests lie.
  start controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$TESTENV_DIR/kubeconfig" \
    --authentication-kubeconfig="$TESTENV_DIR/kubeconfig" \
    --authorization-kubeconfig="$TESTENV_DIR/kubeconfig" \
    --leader-elect=false --use-service-account-credentials=false \
    --controllers=namespace-controller,garbage-collector-controller,serviceaccount-controller,serviceaccount-token-controller \
    --service-account-private-key-file="$d/sa.key" --root-ca-file="$d/ca.crt" \
    --bind-address=127.0.0.1 --secure-port=0 --profiling=false
  wait_for "moto" moto moto_ready
  sleep 1
  pid_alive controller-manager || {
    tail -n 30 "$TESTENV_DIR/controller-manager.log" >&2
    die "kube-controller-manager exited (log: $TESTENV_DIR/controller-manager.log)"
  }

  cat >"$TESTENV_DIR/env.tmp" <<EOF
export KUBECONFIG=$TESTENV_DIR/kubeconfig
export MOTO_ENDPOINT=http://127.0.0.1:$moto_port
export TESTENV_DIR=$TESTENV_DIR
export TESTENV_BIN=$BIN
export PATH=$BIN:\$PATH
EOF
  mv "$TESTENV_DIR/env.tmp" "$TESTENV_DIR/env"
  STARTING=""
  log "up in $((SECONDS - t0))s"
  print_usage
}

stop_all() {
  local p
  # Reverse start order: clients first, so nothing logs storage errors while etcd goes away.
  for p in controller-manager moto apiserver etcd; do
    stop_pidfile "$TESTENV_DIR/$p.pid"
    rm -f "$TESTENV_DIR/$p.log"
  done
  rm -rf "$TESTENV_DIR/etcd" "$TESTENV_DIR/pki" "$TESTENV_DIR/apiserver-certs" \
    "$TESTENV_DIR/env" "$TESTENV_DIR/kubeconfig" "$TESTENV_DIR"/*.port "$TESTENV_DIR"/*.cmd
}

# An API server restart as a rolling upgrade or a crash-looping control plane causes it: every watch
# and request of a client breaks, then the same server comes back with the same data.
cmd_restart_apiserver() {
  local down_for="${1:-0}"
  TESTENV_DIR="$(cd "$TESTENV_DIR" && pwd)"
  exec 7>"$TESTENV_DIR/.lock"
  flock -w 600 7 || die "another testenv.sh holds $TESTENV_DIR/.lock"
  [ -f "$TESTENV_DIR/apiserver.cmd" ] || die "no apiserver command line in $TESTENV_DIR (run: scripts/testenv.sh up)"
  local args=()
  mapfile -d '' args <"$TESTENV_DIR/apiserver.cmd"
  stop_pidfile "$TESTENV_DIR/apiserver.pid"
  sleep "$down_for"
  start apiserver "${args[@]}"
  wait_for "kube-apiserver /readyz" apiserver apiserver_ready
  log "apiserver restarted"
}

cmd_down() {
  [ -d "$TESTENV_DIR" ] || {
    log "nothing to stop in $TESTENV_DIR"
    return 0
  }
  TESTENV_DIR="$(cd "$TESTENV_DIR" && pwd)"
  exec 7>"$TESTENV_DIR/.lock"
  flock -w 600 7 || die "another testenv.sh holds $TESTENV_DIR/.lock"
  stop_all
  rm -f "$TESTENV_DIR"/*.log "$TESTENV_DIR"/.*lock
  rmdir "$TESTENV_DIR" 2>/dev/null || true
  log "down"
}

cmd_status() {
  if [ -d "$TESTENV_DIR" ] && healthy; then
    print_usage
    return 0
  fi
  local p
  for p in etcd apiserver controller-manager moto; do
    if pid_alive "$p"; then log "$p: running"; else log "$p: not running"; fi
  done
  log "testenv is not up (run: scripts/testenv.sh up)"
  return 1
}

cmd_env() {
  [ -f "$TESTENV_DIR/env" ] || die "no env file in $TESTENV_DIR (run: scripts/testenv.sh up)"
  cat "$TESTENV_DIR/env"
}

case "${1:-}" in
build) cmd_build ;;
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
env) cmd_env ;;
restart-apiserver) cmd_restart_apiserver "${2:-0}" ;;
*)
  sed -n '2,15s/^# \{0,1\}//p' "$0" >&2
  exit 2
  ;;
esac
