# shellcheck shell=bash
# Sourced by the scripts that run daemons from pid files (testenv.sh, demo.sh).

# pidfile_alive FILE: the process FILE names is running.
pidfile_alive() {
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# stop_pidfile FILE: SIGTERM the process FILE names, up to 10 s to exit, then SIGKILL; FILE goes.
stop_pidfile() {
  local f="$1" pid
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if pidfile_alive "$f"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}
