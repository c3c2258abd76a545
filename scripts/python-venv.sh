#!/usr/bin/env bash
# Creates (or reuses) the test virtualenv and prints its path on stdout; everything else goes to stderr.
#
# The venv lives outside the clone, keyed by the Python version and a hash of tests/requirements.txt,
# so a warm machine reuses it and any change to the requirements gets a fresh one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQ="$ROOT/tests/requirements.txt"
CACHE="${ATLAS_EO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/atlas-encryption-operator}"
PYTHON="${PYTHON:-python3}"

log() { echo "python-venv: $*" >&2; }
# shellcheck source=scripts/apt.sh
source "$ROOT/scripts/apt.sh"

if ! command -v "$PYTHON" >/dev/null; then
  apt_install python3 python3-venv
fi

pyver="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
reqhash="$(sha256sum "$REQ" | cut -c1-12)"
venv="$CACHE/venv-$pyver-$reqhash"

mkdir -p "$CACHE"
exec 9>"$venv.lock"
flock 9

# The marker is written last, so a venv left behind by an interrupted run is rebuilt, not trusted.
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  log "creating $venv"
  if ! "$PYTHON" -m venv "$venv" >&2; then
    # Debian splits venv/ensurepip out of the interpreter package.
    rm -rf "$venv"
    apt_install python3-venv
    "$PYTHON" -m venv "$venv" >&2
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" >&2
  touch "$venv/.complete"
fi

echo "$venv"
