#!/usr/bin/env bash
# Stop a cluster started by hack/k8s/start.sh STATE_DIR, and with a node remove what it left on
# the host (hack/k8s/node.sh, node_teardown: pods first, then the processes, then mounts,
# cgroups, the network namespace and the host paths it created).
#
# Usage: hack/k8s/stop.sh STATE_DIR
#
# Each process gets SIGTERM, then SIGKILL after RIGHTSIZER_K8S_STOP_TIMEOUT seconds (default
# 10). Idempotent: a missing STATE_DIR, pid file or process is not an error. Only the pids
# recorded in STATE_DIR are signalled, and only if that pid still runs the expected program.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf '[k8s/stop] %s\n' "$*" >&2; }

[[ $# -eq 1 ]] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
[[ -d "$1" ]] || exit 0
state="$(cd "$1" && pwd)"
logs="$state/logs"
pki="$state/pki"
timeout_s="${RIGHTSIZER_K8S_STOP_TIMEOUT:-10}"

# is_ours NAME PID: the pid runs (a zombie does not) and its command line names the program.
is_ours() {
  local cmdline stat
  kill -0 "$2" 2>/dev/null || return 1
  stat="$(cat "/proc/$2/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != "Z" ]] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$2/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$1"* ]]
}

recorded_pid() {
  local pidfile="$state/$1.pid" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  echo "$pid"
}

alive_pid() {
  local pid
  pid="$(recorded_pid "$1")" && is_ours "$1" "$pid"
}

# stop_process NAME: SIGTERM the recorded pid, SIGKILL it if it outlives the timeout.
stop_process() {
  local name="$1" pid deadline
  if pid="$(recorded_pid "$name")" && is_ours "$name" "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$(( $(date +%s) + timeout_s ))
    while is_ours "$name" "$pid" && (( $(date +%s) < deadline )); do
      sleep 0.1
    done
    if is_ours "$name" "$pid"; then
      log "$name (pid $pid) ignored SIGTERM for ${timeout_s}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 50); do is_ours "$name" "$pid" || break; sleep 0.1; done
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$state/$name.pid"
}

if [[ -f "$state/netns" || -f "$state/node-created-paths" ]]; then
  # shellcheck source=hack/k8s/node.sh
  . "$here/node.sh"
  node_teardown
fi
for name in kube-controller-manager kube-apiserver etcd; do
  stop_process "$name"
done
for pidfile in "$state"/forward-*.pid; do
  [[ -e "$pidfile" ]] || continue
  name="$(basename "$pidfile" .pid)"
  stop_process "$name"
  rm -f "$state/$name.port"
done
