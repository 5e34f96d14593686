#!/usr/bin/env bash
# Start a throw-away Kubernetes cluster: etcd, kube-apiserver and kube-controller-manager, and
# with --node also kube-scheduler, containerd and a kubelet, so that pods really run.
#
# Usage: hack/k8s/start.sh [--node] STATE_DIR
#
# Without --node: the control plane listens on the host's 127.0.0.1 (free ports); there are no
# nodes and pods stay Pending. Needs no root.
#
# With --node (needs root): the whole cluster runs inside a network namespace made for it
# (rsz-<hash>, no route out), the node's address on a veth pair whose two ends both live inside.
# Pods get addresses from a CNI bridge inside it. The host reaches the API server through a
# loopback forwarder (forward.py), so all traffic stays on loopback or inside the namespace.
# The node's images (hack/images/build.sh) are imported into containerd without a registry.
#
# Binaries: hack/k8s/build.sh (KUBEBUILDER_ASSETS or the build cache; built if missing). Set
# RIGHTSIZER_K8S_BIN_DIR to skip build.sh and use a directory as is.
#
# STATE_DIR receives admin.kubeconfig, env (source it), pki/, logs/*.log, one *.pid file per
# process started, and the node's state (containerd/, kubelet/, cni/). Every start is a fresh
# cluster. Stop it with hack/k8s/stop.sh STATE_DIR (which also removes what the node leaves on
# the host). See docs/controlplane.md.
#
# Environment:
#   RIGHTSIZER_K8S_START_TIMEOUT  seconds to wait for readiness (default 120)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf '[k8s/start] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

node=0
if [[ "${1:-}" == "--node" ]]; then node=1; shift; fi
[[ $# -eq 1 ]] || { echo "usage: $0 [--node] STATE_DIR" >&2; exit 2; }
if ((node)) && [[ $(id -u) -ne 0 ]]; then
  log "ERROR: the node needs root: it creates a network namespace, cgroups and mounts, and runs"
  log "containerd and a kubelet. Run as root, or start without --node (a control plane whose pods stay Pending)."
  exit 1
fi
mkdir -p "$1"
state="$(cd "$1" && pwd)"
pki="$state/pki"
logs="$state/logs"
timeout_s="${RIGHTSIZER_K8S_START_TIMEOUT:-120}"
t0=$(date +%s.%N)

for tool in openssl python3 kubectl; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required but not on PATH"
done

components=(etcd kube-apiserver kube-controller-manager)
((node)) && components+=(kube-scheduler kubelet kube-proxy)

alive() { [[ -f "$state/$1.pid" ]] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

for c in "${components[@]}" containerd forward-apiserver; do
  if alive "$c"; then
    die "$c is already running from $state (pid $(cat "$state/$c.pid")); run hack/k8s/stop.sh $state first"
  fi
done

# ---------------------------------------------------------------- node prerequisites
if ((node)); then
  # shellcheck source=hack/k8s/node.sh
  . "$here/node.sh"
  # One node per machine: a second start waits here until the first one's preflight and start are
  # done (after that, the preflight sees its kubelet). The test harness holds the lock for a node's
  # whole life and says so with RIGHTSIZER_NODE_LOCK_HELD=1. The node's processes do not inherit it.
  if [[ "${RIGHTSIZER_NODE_LOCK_HELD:-}" != "1" ]]; then
    exec 9>>/run/lock/rightsizer-node.lock
    if ! flock -n 9; then
      log "another node is starting on this machine; waiting for it (up to 30 minutes)"
      flock -w 1800 9 || die "another node held /run/lock/rightsizer-node.lock for 30 minutes"
    fi
  fi
  node_preflight || exit 1
fi

if [[ -n "${RIGHTSIZER_K8S_BIN_DIR:-}" ]]; then
  bin="$RIGHTSIZER_K8S_BIN_DIR"
else
  bin="$("$here/build.sh" | tail -n 1)"
fi
for c in "${components[@]}"; do
  [[ -x "$bin/$c" ]] || die "$bin/$c is missing or not executable"
done

fail() {
  log "ERROR: $*"
  for c in "${components[@]}" containerd; do
    if [[ -f "$logs/$c.log" ]]; then
      printf '\n----- last 40 lines of %s -----\n' "$logs/$c.log" >&2
      tail -n 40 "$logs/$c.log" >&2
    fi
  done
  "$here/stop.sh" "$state" >&2 || true
  exit 1
}

# ---------------------------------------------------------------- addresses
if ((node)); then
  # Inside the namespace nothing else listens: the usual fixed ports.
  etcd_port=2379 etcd_peer_port=2380 api_port=6443 kcm_port=10257 scheduler_port=10259
  listen_ip=0.0.0.0 # only the namespace's loopback and veth: nothing outside can connect
  advertise_ip="$NODE_IP"
else
  read -r etcd_port etcd_peer_port api_port kcm_port scheduler_port < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(5):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
)
  listen_ip=127.0.0.1
  advertise_ip=127.0.0.1
fi
internal_server="https://127.0.0.1:$api_port"

# ---------------------------------------------------------------- certificates
rm -rf "$pki" "$state/etcd-data" "$state/kcm-certs"
mkdir -p "$pki" "$logs"
chmod 700 "$pki"

newkey() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }

# sign NAME SUBJECT EXTENSIONS: writes NAME.key / NAME.crt signed by the CA.
sign() {
  local name="$1" subj="$2" ext="$3"
  newkey "$pki/$name.key"
  openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}

newkey "$pki/ca.key"
openssl req -x509 -new -key "$pki/ca.key" -sha256 -days 30 -subj "/CN=rightsizer-test-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$pki/ca.crt" 2>/dev/null
server_ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth"
client_ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
sign apiserver "/CN=kube-apiserver" "$server_ext
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,IP:$advertise_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign admin "/O=system:masters/CN=rightsizer-admin" "$client_ext"
sign controller-manager "/CN=system:kube-controller-manager" "$client_ext"
# Service-account token signing key pair.
newkey "$pki/sa.key"
openssl ec -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
if ((node)); then
  sign scheduler "/CN=system:kube-scheduler" "$client_ext"
  sign kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" "$client_ext"
  sign kubelet "/CN=system:node:$NODE_NAME" "$server_ext
subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME"
  # Prometheus scrapes the kubelet and discovers the node as this user (ClusterRole below).
  sign prometheus "/CN=rightsizer-prometheus" "$client_ext"
  sign kube-proxy "/CN=system:kube-proxy" "$client_ext"
  # The API server's client certificate for kubelet logs, exec and port-forward.
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client_ext"
fi

b64() { base64 -w0 <"$1"; }

# write_kubeconfig FILE USER CERT_NAME SERVER (a subshell: its umask must not reach the processes
# started later: containerd would make containers' root directories 0700, which a non-root
# container without capabilities cannot enter).
write_kubeconfig() (
  umask 077
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: rightsizer-test
  cluster:
    server: $4
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$pki/$3.crt")
    client-key-data: $(b64 "$pki/$3.key")
contexts:
- name: $2@rightsizer-test
  context:
    cluster: rightsizer-test
    user: $2
    namespace: default
current-context: $2@rightsizer-test
EOF
)
# Components inside the cluster's network (all of them, with or without a node) use the API
# server's own address; admin.kubeconfig is for the host (through the forwarder with a node).
write_kubeconfig "$state/controller-manager.kubeconfig" system:kube-controller-manager controller-manager "$internal_server"
write_kubeconfig "$state/internal-admin.kubeconfig" admin admin "$internal_server"
if ((node)); then
  write_kubeconfig "$state/scheduler.kubeconfig" system:kube-scheduler scheduler "$internal_server"
  write_kubeconfig "$state/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet-client "$internal_server"
  write_kubeconfig "$state/kube-proxy.kubeconfig" system:kube-proxy kube-proxy "$internal_server"
fi

# ---------------------------------------------------------------- processes
in_cluster_net=()
((node)) && in_cluster_net=(nsenter "--net=$NETNS_PATH")

# launch NAME ARGS...: runs detached (inside the cluster's network namespace with a node),
# stdin/stdout/stderr not inherited. nsenter execs the command, so the pid is the component's.
launch() {
  local name="$1"; shift
  setsid "${in_cluster_net[@]}" "$@" </dev/null >"$logs/$name.log" 2>&1 9>&- &
  echo $! >"$state/$name.pid"
}

if ((node)); then
  node_network_up || fail "could not create the network namespace $NETNS_NAME"
fi

launch etcd "$bin/etcd" \
  --name=rightsizer-test \
  --data-dir="$state/etcd-data" \
  --listen-client-urls="http://127.0.0.1:$etcd_port" \
  --advertise-client-urls="http://127.0.0.1:$etcd_port" \
  --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster="rightsizer-test=http://127.0.0.1:$etcd_peer_port" \
  --unsafe-no-fsync \
  --log-level=warn

# Without a node there is nowhere for the `kubernetes` Service to lead (127.0.0.1 is not a valid
# endpoint). With one, the API server keeps its endpoint at the node's address, which kube-proxy
# makes 10.0.0.1:443 lead to, so pods (the operator's) reach it as in any cluster.
apiserver_node_args=(--endpoint-reconciler-type=none)
if ((node)); then
  apiserver_node_args=(
    --endpoint-reconciler-type=lease
    --kubelet-certificate-authority="$pki/ca.crt"
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt"
    --kubelet-client-key="$pki/apiserver-kubelet-client.key"
    --kubelet-preferred-address-types=InternalIP
  )
fi
# An audit log of what the operator's ServiceAccount writes (metadata only: who, verb, object):
# tests count Auto mode's API calls per change from it (docs/operator.md has the figures).
cat >"$state/audit-policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    users: ["system:serviceaccount:rightsizer-system:rightsizer"]
    verbs: [create, update, patch, delete]
  - level: None
EOF
launch kube-apiserver "$bin/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$etcd_port" \
  --audit-policy-file="$state/audit-policy.yaml" \
  --audit-log-path="$logs/audit.log" \
  --audit-log-maxsize=100 \
  --bind-address="$listen_ip" \
  --advertise-address="$advertise_ip" \
  --secure-port="$api_port" \
  --cert-dir="$pki" \
  --tls-cert-file="$pki/apiserver.crt" \
  --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --authorization-mode=Node,RBAC \
  --service-account-issuer="$internal_server" \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --allow-privileged=true \
  --profiling=false \
  "${apiserver_node_args[@]}"

if ((node)); then
  # The host's way in: 127.0.0.1:<free port> on the host -> 127.0.0.1:6443 in the namespace.
  forward_to "apiserver" "127.0.0.1:$api_port" || fail "the API server forwarder did not start"
  server="https://127.0.0.1:$(cat "$state/forward-apiserver.port")"
else
  server="$internal_server"
fi
write_kubeconfig "$state/admin.kubeconfig" admin admin "$server"

{
  echo "# Generated by hack/k8s/start.sh; source it: . $state/env"
  echo "export KUBECONFIG='$state/admin.kubeconfig'"
  echo "export RIGHTSIZER_TEST_KUBECONFIG='$state/admin.kubeconfig'"
  echo "export RIGHTSIZER_K8S_SERVER='$server'"
  echo "export RIGHTSIZER_K8S_STATE_DIR='$state'"
  echo "export RIGHTSIZER_K8S_ETCD='http://127.0.0.1:$etcd_port'"
  if ((node)); then
    echo "export RIGHTSIZER_K8S_NETNS='$NETNS_PATH'"
    echo "export RIGHTSIZER_K8S_NODE_NAME='$NODE_NAME'"
    echo "export RIGHTSIZER_K8S_NODE_IP='$NODE_IP'"
  fi
} >"$state/env"

# The controller-manager (and scheduler) start only once the API server is ready: before that,
# RBAC's bootstrap roles (and kube-system) may not exist yet and they exit with "forbidden".
start_controllers() {
  launch kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$state/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$state/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$state/controller-manager.kubeconfig" \
    --authentication-skip-lookup=true \
    --client-ca-file="$pki/ca.crt" \
    --bind-address=127.0.0.1 \
    --secure-port="$kcm_port" \
    --cert-dir="$state/kcm-certs" \
    --controllers='*' \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$pki/sa.key" \
    --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" \
    --cluster-signing-key-file="$pki/ca.key" \
    --leader-elect=false \
    --profiling=false
  if ((node)); then
    launch kube-scheduler "$bin/kube-scheduler" \
      --kubeconfig="$state/scheduler.kubeconfig" \
      --authentication-kubeconfig="$state/scheduler.kubeconfig" \
      --authorization-kubeconfig="$state/scheduler.kubeconfig" \
      --authentication-skip-lookup=true \
      --bind-address=127.0.0.1 \
      --secure-port="$scheduler_port" \
      --leader-elect=false \
      --profiling=false
    node_start "$bin" || fail "the node did not start"
  fi
}

# ---------------------------------------------------------------- readiness
kc=(kubectl --kubeconfig="$state/admin.kubeconfig" --request-timeout=5s)
deadline=$(( $(date +%s) + timeout_s ))
stage="kube-apiserver /readyz"
started=(etcd kube-apiserver)
while :; do
  for c in "${started[@]}"; do
    alive "$c" || fail "$c exited during start-up (log: $logs/$c.log)"
  done
  case "$stage" in
    "kube-apiserver /readyz")
      if [[ "$("${kc[@]}" get --raw /readyz 2>/dev/null)" == "ok" ]]; then
        ((node)) && node_rbac "${kc[@]}"
        start_controllers
        started+=(kube-controller-manager)
        ((node)) && started+=(kube-scheduler containerd kubelet kube-proxy)
        stage="ServiceAccount default/default (created by kube-controller-manager)"
        continue
      fi
      ;;
    "ServiceAccount"*)
      if "${kc[@]}" -n default get serviceaccount default >/dev/null 2>&1; then
        ((node)) || break
        stage="Node $NODE_NAME Ready"
        continue
      fi
      ;;
    "Node"*)
      ready="$("${kc[@]}" get node "$NODE_NAME" \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)"
      [[ "$ready" == "True" ]] && break
      ;;
  esac
  (( $(date +%s) < deadline )) || fail "timed out after ${timeout_s}s waiting for $stage"
  sleep 0.5
done

elapsed=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")
if ((node)); then
  log "ready in ${elapsed}s with Node $NODE_NAME ($NODE_IP, network namespace $NETNS_NAME): $server"
else
  log "ready in ${elapsed}s: $server (KUBECONFIG=$state/admin.kubeconfig)"
fi
echo "$state/admin.kubeconfig"
