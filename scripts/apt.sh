# shellcheck shell=bash
# Sourced by the scripts that may find a tool missing on a fresh machine: installs Debian packages.
# The sourcing script defines `log`. Returns non-zero when apt-get is absent or fails, so the caller
# decides whether that is fatal.
apt_install() {
  command -v apt-get >/dev/null || {
    log "apt-get not available to install $*"
    return 1
  }
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  log "installing $* with apt-get"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2
}
