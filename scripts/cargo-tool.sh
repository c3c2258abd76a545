#!/usr/bin/env bash
# Installs (or reuses) a cargo tool at an exact version and prints the path of its binary on stdout;
# everything else goes to stderr.
#
#   scripts/cargo-tool.sh <crate> <version> [binary]
#
# The tool lives outside the clone, under <cache>/tools/<crate>-<version>/bin, built once with
# `cargo install --locked` (the crate's own Cargo.lock) and shared by every clone and CI run on the machine.
# A flock serialises concurrent installs of the same tool; a marker written last means an interrupted
# install is redone, not trusted.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 <crate> <version> [binary]" >&2
  exit 2
fi
crate="$1"
version="$2"
bin="${3:-$crate}"

CACHE="${ATLAS_EO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/atlas-encryption-operator}"
root="$CACHE/tools/$crate-$version"

log() { echo "cargo-tool: $*" >&2; }

mkdir -p "$CACHE/tools"
exec 9>"$root.lock"
flock 9

if [ ! -f "$root/.complete" ] || [ ! -x "$root/bin/$bin" ]; then
  rm -rf "$root"
  log "installing $crate $version into $root (once per machine)"
  # The tool's own target dir, not the project's: CARGO_TARGET_DIR would mix its artifacts with ours.
  # The project's rust-toolchain.toml applies because cargo runs from the clone; the tools build on it.
  CARGO_TARGET_DIR="$CACHE/tools/.build-$crate-$version" \
    cargo install --locked --quiet --root "$root" --version "=$version" "$crate" >&2
  rm -rf "$CACHE/tools/.build-$crate-$version"
  touch "$root/.complete"
fi

echo "$root/bin/$bin"
