#!/usr/bin/env bash
# Stop a control plane started by hack/k8s/start.sh STATE_DIR.
#
# Usage: hack/k8s/stop.sh STATE_DIR
#
# Sends SIGTERM to kube-controller-manager, kube-apiserver and etcd (in that
# order), waits up to RIGHTSIZER_K8S_STOP_TIMEOUT seconds (default 10) for each,
# then SIGKILLs what is left. Idempotent: a missing STATE_DIR, pid file or
# process is not an error. Only the pids recorded in STATE_DIR are signalled,
# and only if that pid still runs the expected binary.
set -euo pipefail

log() { printf '[k8s/stop] %s\n' "$*" >&2; }

[[ $# -eq 1 ]] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
state="$1"
timeout_s="${RIGHTSIZER_K8S_STOP_TIMEOUT:-10}"
[[ -d "$state" ]] || exit 0

# is_ours NAME PID: the pid runs (a zombie does not) and its command line
# names the component.
is_ours() {
  local cmdline stat
  kill -0 "$2" 2>/dev/null || return 1
  stat="$(cat "/proc/$2/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != "Z" ]] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$2/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$1"* ]]
}

for name in kube-controller-manager kube-apiserver etcd; do
  pidfile="$state/$name.pid"
  [[ -f "$pidfile" ]] || continue
  pid="$(cat "$pidfile")"
  if [[ "$pid" =~ ^[0-9]+$ ]] && is_ours "$name" "$pid"; then
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
  rm -f "$pidfile"
done
