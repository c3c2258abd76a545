#!/usr/bin/env bash
# Runs a command with nothing beside the checkout readable: every sibling of the clone's folder (for
# example a `shared/` of notes next to it) is covered by an empty read-only tmpfs in a private mount
# namespace, so a build, test or script that reads outside the repository fails instead of passing
# only on machines that happen to have those files. Folders that hold the toolchains and caches (HOME,
# CARGO_HOME, RUSTUP_HOME, GOPATH, the project cache, TMPDIR) are left alone.
#   scripts/self-contained.sh CMD [ARGS...]
# Needs root (or CAP_SYS_ADMIN) for the mount namespace; elsewhere it says so and runs CMD as it is.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PARENT="$(dirname "$ROOT")"
log() { echo "self-contained: $*" >&2; }

keep=("$HOME" "${CARGO_HOME:-$HOME/.cargo}" "${RUSTUP_HOME:-$HOME/.rustup}" "$(go env GOPATH 2>/dev/null || echo "$HOME/go")"
  "${ATLAS_EO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/atlas-encryption-operator}" "${TMPDIR:-/tmp}")
hide=()
for entry in "$PARENT"/* "$PARENT"/.[!.]*; do
  [ -e "$entry" ] || continue
  [ "$entry" = "$ROOT" ] && continue
  [ -d "$entry" ] && [ ! -L "$entry" ] || continue
  needed=""
  for k in "${keep[@]}"; do
    case "$k/" in "$entry"/*) needed=1 ;; esac
  done
  [ -n "$needed" ] || hide+=("$entry")
done

if [ ${#hide[@]} -eq 0 ]; then
  log "nothing beside $ROOT to hide"
  exec "$@"
fi
if [ "$(id -u)" != 0 ] || ! unshare -m --propagation private true 2>/dev/null; then
  log "no mount namespace here (needs root); running without hiding ${hide[*]}"
  exec "$@"
fi
log "hiding ${hide[*]} from: $*"
exec unshare -m --propagation private bash -c '
  for d in "${@:2:$1}"; do mount -t tmpfs -o ro,size=4k,mode=0555 self-contained "$d"; done
  shift $(($1 + 1))
  exec "$@"' hide "${#hide[@]}" "${hide[@]}" "$@"
