# The real node of hack/k8s: a network namespace, containerd and a kubelet. Sourced by start.sh
# (with --node) and stop.sh; expects $here, $state, $logs and $pki, and log/die from the caller.
#
# What a node leaves on the host, and where it is cleaned up (node_teardown):
#   - the network namespace rsz-<hash> (veth, CNI bridge and pod interfaces go with it) and the
#     /run/netns bind mount if this node created it;
#   - cgroups named kubepods under every /sys/fs/cgroup/* hierarchy (cgroupfs driver);
#   - mounts under STATE_DIR (overlay root file systems, shm, pod network namespaces) and the
#     kubelet's bind mount of its root dir;
#   - /var/lib/kubelet (the device-plugin socket lands there whatever --root-dir says) and
#     /run/containerd (shim sockets at fixed paths), when they did not exist before the start.
# Everything else (containerd's and the kubelet's state, CNI IP allocations, pod logs) lives in
# STATE_DIR.

NODE_NAME=rsz-node
NODE_IP=10.213.0.2
POD_SUBNET=10.214.0.0/24
NETNS_NAME="rsz-$(printf '%s' "$state" | sha256sum | cut -c1-8)"
NETNS_PATH="/run/netns/$NETNS_NAME"
CNI_BIN_DIR="${RIGHTSIZER_CNI_BIN_DIR:-/usr/lib/cni}"
CONTAINERD_SOCK="$state/containerd/containerd.sock"
# Paths outside STATE_DIR that the node may create; those absent before the start are removed.
HOST_PATHS=(/var/lib/kubelet /run/containerd /run/netns /var/log/containers /var/log/pods /run/xtables.lock)
NODE_PROCESSES=(kubelet containerd kube-scheduler kube-proxy)

# Everything the node needs, checked before anything starts (start.sh has checked for root).
node_preflight() {
  local tool missing=()
  for tool in nsenter ip iptables containerd containerd-shim-runc-v2 runc ctr; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  for tool in bridge host-local loopback; do
    [[ -x "$CNI_BIN_DIR/$tool" ]] || missing+=("$CNI_BIN_DIR/$tool")
  done
  # containerd's longest socket is $CONTAINERD_SOCK.ttrpc; a unix socket's path may not pass 107 bytes.
  if ((${#CONTAINERD_SOCK} + 6 > 107)); then
    log "ERROR: the state dir's path is too long for containerd's sockets ($CONTAINERD_SOCK.ttrpc is"
    log "longer than 107 bytes): use a shorter STATE_DIR"
    return 1
  fi
  if ((${#missing[@]})); then
    log "ERROR: the node needs: ${missing[*]} (Debian: containerd runc containernetworking-plugins iptables;"
    log "hack/setup.sh installs them when run as root)"
    return 1
  fi
  local other
  # A kubelet that has exited but is not reaped yet (a zombie: this machine's init reaps slowly)
  # is not running.
  other="$(pgrep -x kubelet | while read -r pid; do
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" =~ ^[RSDTtIW]$ ]] && echo "$pid"
  done | head -n 1 || true)"
  if [[ -n "$other" ]]; then
    log "ERROR: a kubelet already runs on this machine (pid $other): one node at a time, its cgroups have fixed names"
    return 1
  fi
  # With no kubelet running, kubepods cgroups are an earlier node's leftovers (one that was killed
  # before stop.sh ran, say). Empty ones are removed; any holding a process are not ours to kill.
  if compgen -G "/sys/fs/cgroup/*/kubepods" >/dev/null; then
    local holders
    holders="$(find /sys/fs/cgroup/*/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | tr '\n' ' ')"
    if [[ -n "${holders// /}" ]]; then
      log "ERROR: kubepods cgroups left on this machine by an earlier node still hold processes ($holders);"
      log "run hack/k8s/stop.sh on its state dir, or stop those processes first"
      return 1
    fi
    log "removing empty kubepods cgroups left by an earlier node"
    remove_kubepods_cgroups
    if compgen -G "/sys/fs/cgroup/*/kubepods" >/dev/null; then
      log "ERROR: could not remove the kubepods cgroups left by an earlier node: $(compgen -G "/sys/fs/cgroup/*/kubepods")"
      return 1
    fi
  fi
  if [[ -e "$NETNS_PATH" ]]; then
    log "ERROR: network namespace $NETNS_NAME exists already; run hack/k8s/stop.sh $state first"
    return 1
  fi
  local path
  : >"$state/node-created-paths"
  for path in "${HOST_PATHS[@]}"; do
    [[ -e "$path" ]] || echo "$path" >>"$state/node-created-paths"
  done
  IMAGES_DIR="$("$here/../images/build.sh" | tail -n 1)" || { log "ERROR: building the node's images failed"; return 1; }
}

# The cluster's network: a namespace with loopback and a veth pair whose two ends stay inside.
# It has no default route, so nothing started in it can reach beyond this machine.
node_network_up() {
  ip netns add "$NETNS_NAME" || return 1
  echo "$NETNS_NAME" >"$state/netns"
  ip -n "$NETNS_NAME" link set lo up &&
    ip -n "$NETNS_NAME" link add rsz-node type veth peer name rsz-peer &&
    ip -n "$NETNS_NAME" addr add "$NODE_IP/24" dev rsz-node &&
    ip -n "$NETNS_NAME" link set rsz-node up &&
    ip -n "$NETNS_NAME" link set rsz-peer up
}

# forward_to NAME HOST:PORT: 127.0.0.1:<free port> on the host -> HOST:PORT in the namespace.
# The port is written to $state/forward-NAME.port.
forward_to() {
  local name="$1" target="$2" waited=0
  setsid python3 "$here/forward.py" --netns "$NETNS_PATH" --to "$target" \
    --port-file "$state/forward-$name.port" </dev/null >"$logs/forward-$name.log" 2>&1 9>&- &
  echo $! >"$state/forward-$name.pid"
  until [[ -s "$state/forward-$name.port" ]]; do
    kill -0 "$(cat "$state/forward-$name.pid")" 2>/dev/null || { cat "$logs/forward-$name.log" >&2; return 1; }
    ((waited++ < 100)) || return 1
    sleep 0.1
  done
}

# What Prometheus needs to discover the node and scrape the kubelet's /metrics/cadvisor, as
# user rightsizer-prometheus (its client certificate is pki/prometheus.crt).
node_rbac() {
  "$@" apply -f - >/dev/null <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: rightsizer-test:prometheus
rules:
  - apiGroups: [""]
    resources: [nodes, nodes/metrics, pods, services, endpoints]
    verbs: [get, list, watch]
  - nonResourceURLs: [/metrics]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: rightsizer-test:prometheus
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: rightsizer-test:prometheus
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: rightsizer-prometheus
EOF
}

node_start() {
  local bin="$1" waited=0 image
  mkdir -p "$state/containerd" "$state/cni/net.d" "$state/cni/ipam" "$state/kubelet" "$state/pod-logs"
  cat >"$state/containerd/config.toml" <<EOF
version = 2
root = "$state/containerd/root"
state = "$state/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$state/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "rightsizer.local/pause:v1"
  # This VM withholds CAP_SYS_RESOURCE: a negative oom_score_adj cannot be written.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$state/cni/net.d"
EOF
  cat >"$state/cni/net.d/10-rightsizer.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "rightsizer",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "rsz-cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_SUBNET"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$state/cni/ipam"
      }
    }
  ]
}
EOF
  launch containerd containerd --config "$state/containerd/config.toml" --log-level warn
  until ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; do
    alive containerd || { log "containerd exited (log: $logs/containerd.log)"; return 1; }
    ((waited++ < 200)) || { log "containerd did not answer on $CONTAINERD_SOCK"; return 1; }
    sleep 0.1
  done
  for image in "$IMAGES_DIR"/*.tar; do
    ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$image" >/dev/null ||
      { log "importing $image into containerd failed"; return 1; }
  done

  cat >"$state/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
# The VMs here mount cgroup v1 (kubelet 1.34 refuses it unless told).
failCgroupV1: false
failSwapOn: false
podLogsDir: $state/pod-logs
resolvConf: ""
clusterDomain: cluster.local
maxPods: 40
# The images are imported, not pulled: they must never be collected.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
registerNode: true
EOF
  # --containerd: without it cAdvisor cannot register containerd's containers and
  # /metrics/cadvisor has pod-level series only. --housekeeping-interval: cAdvisor refreshes
  # container stats every 2 s (10 s by default), so windows of a minute hold enough samples.
  launch kubelet "$bin/kubelet" \
    --config="$state/kubelet/config.yaml" \
    --kubeconfig="$state/kubelet.kubeconfig" \
    --root-dir="$state/kubelet" \
    --cert-dir="$state/kubelet/pki" \
    --node-ip="$NODE_IP" \
    --hostname-override="$NODE_NAME" \
    --containerd="$CONTAINERD_SOCK" \
    --housekeeping-interval=2s

  # kube-proxy makes Services work inside the namespace (iptables rules in it, gone with it):
  # pods reach the API server through the `kubernetes` Service (10.0.0.1:443), whose endpoint
  # the API server keeps at the node's address. Conntrack limits and timeouts are the host's
  # (0: left as they are).
  cat >"$state/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $state/kube-proxy.kubeconfig
mode: iptables
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_SUBNET
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [$NODE_IP/32]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
  launch kube-proxy "$bin/kube-proxy" --config="$state/kube-proxy.yaml"
}

# ---------------------------------------------------------------- teardown (stop.sh)

node_teardown() {
  local kc=(kubectl --kubeconfig="$state/internal-admin.kubeconfig" --request-timeout=5s)
  local ns=(nsenter "--net=$NETNS_PATH")
  # 1. No controller may recreate pods; then the kubelet stops them and unmounts their volumes.
  stop_process kube-controller-manager
  stop_process kube-scheduler
  if alive_pid kubelet && [[ -e "$NETNS_PATH" ]]; then
    "${ns[@]}" "${kc[@]}" delete pods --all --all-namespaces --grace-period=2 --wait=false >/dev/null 2>&1 || true
    local deadline=$(( $(date +%s) + 60 )) left
    while (( $(date +%s) < deadline )); do
      left="$("${ns[@]}" "${kc[@]}" get pods -A --no-headers 2>/dev/null | wc -l)" || break
      [[ "$left" == "0" ]] && break
      sleep 0.5
    done
  fi
  stop_process kubelet
  stop_process kube-proxy
  # 2. Whatever containerd still runs (the kubelet died early, say) is killed and removed.
  if alive_pid containerd; then
    local task
    for task in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
    done
    for task in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks delete -f "$task" >/dev/null 2>&1 || true
    done
  fi
  stop_process containerd
  # Shims outlive containerd by design; ours name our socket on their command line.
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null || true
  # 3. Mounts (deepest first), cgroups (depth-first), the namespace, the host paths we created.
  unmount_under "$state"
  grep -qx /var/lib/kubelet "$state/node-created-paths" 2>/dev/null && unmount_under /var/lib/kubelet
  remove_kubepods_cgroups
  if [[ -f "$state/netns" ]]; then
    ip netns delete "$(cat "$state/netns")" 2>/dev/null || true
    rm -f "$state/netns"
  fi
  local path
  while read -r path; do
    case "$path" in
      "") ;;
      /run/netns) # ip netns add bind-mounts it on itself; leave it while others use it
        if [[ -z "$(ls -A /run/netns 2>/dev/null)" ]]; then umount /run/netns 2>/dev/null; rmdir /run/netns 2>/dev/null; fi ;;
      *) rm -rf "$path" ;;
    esac
  done <"$state/node-created-paths" 2>/dev/null || true
  rm -f "$state/node-created-paths"
  rm -rf "$state/containerd" "$state/kubelet" "$state/cni" "$state/pod-logs"
  leftover="$(compgen -G "/sys/fs/cgroup/*/kubepods" || true)"
  [[ -z "$leftover" ]] || log "WARNING: could not remove cgroups: $leftover"
}

# remove_kubepods_cgroups: the kubelet's cgroups under every hierarchy, depth-first. A killed
# container's processes can take a moment to leave their cgroup (rmdir says EBUSY meanwhile), so
# removal is retried for up to 30 s.
remove_kubepods_cgroups() {
  local hierarchy deadline=$(( $(date +%s) + 30 ))
  while :; do
    for hierarchy in /sys/fs/cgroup/*/kubepods; do
      [[ -d "$hierarchy" ]] && { find "$hierarchy" -depth -type d -exec rmdir {} + 2>/dev/null || true; }
    done
    compgen -G "/sys/fs/cgroup/*/kubepods" >/dev/null || return 0
    (( $(date +%s) < deadline )) || return 0
    sleep 0.5
  done
}

# unmount_under DIR: unmount every mount point at or below DIR, deepest first.
unmount_under() {
  local dir="$1" point
  { awk '{print $5}' /proc/self/mountinfo | grep -E "^${dir}(/|$)" || true; } | sort -r | while read -r point; do
    umount "$point" 2>/dev/null || umount -l "$point" 2>/dev/null || log "WARNING: could not unmount $point"
  done
}
