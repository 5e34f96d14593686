#!/usr/bin/env bash
# Start a throw-away Kubernetes control plane on 127.0.0.1: etcd,
# kube-apiserver and kube-controller-manager (no nodes, no scheduler).
#
# Usage: hack/k8s/start.sh STATE_DIR
#
# Binaries: hack/k8s/build.sh (KUBEBUILDER_ASSETS or the build cache; built if
# missing). Set RIGHTSIZER_K8S_BIN_DIR to skip build.sh and use a directory as is.
#
# STATE_DIR receives: admin.kubeconfig, env (source it), pki/, logs/*.log,
# *.pid, etcd-data/. Every start is a fresh cluster: etcd data and certificates
# from an earlier start in the same STATE_DIR are replaced.
# Stop it with hack/k8s/stop.sh STATE_DIR.
#
# Environment:
#   RIGHTSIZER_K8S_START_TIMEOUT  seconds to wait for readiness (default 120)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf '[k8s/start] %s\n' "$*" >&2; }

[[ $# -eq 1 ]] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
mkdir -p "$1"
state="$(cd "$1" && pwd)"
pki="$state/pki"
logs="$state/logs"
timeout_s="${RIGHTSIZER_K8S_START_TIMEOUT:-120}"
t0=$(date +%s.%N)

for tool in openssl python3 kubectl; do
  command -v "$tool" >/dev/null 2>&1 || { log "ERROR: '$tool' is required but not on PATH"; exit 1; }
done

components=(etcd kube-apiserver kube-controller-manager)

alive() { [[ -f "$state/$1.pid" ]] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

for c in "${components[@]}"; do
  if alive "$c"; then
    log "ERROR: $c is already running from $state (pid $(cat "$state/$c.pid")); run hack/k8s/stop.sh $state first"
    exit 1
  fi
done

if [[ -n "${RIGHTSIZER_K8S_BIN_DIR:-}" ]]; then
  bin="$RIGHTSIZER_K8S_BIN_DIR"
else
  bin="$("$here/build.sh" | tail -n 1)"
fi
for c in "${components[@]}"; do
  [[ -x "$bin/$c" ]] || { log "ERROR: $bin/$c is missing or not executable"; exit 1; }
done

fail() {
  log "ERROR: $*"
  for c in "${components[@]}"; do
    if [[ -f "$logs/$c.log" ]]; then
      printf '\n----- last 40 lines of %s -----\n' "$logs/$c.log" >&2
      tail -n 40 "$logs/$c.log" >&2
    fi
  done
  "$here/stop.sh" "$state" >&2 || true
  exit 1
}

# ---------------------------------------------------------------- ports
read -r etcd_port etcd_peer_port api_port kcm_port < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(4):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
)
server="https://127.0.0.1:$api_port"

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
sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
client_ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
sign admin "/O=system:masters/CN=rightsizer-admin" "$client_ext"
sign controller-manager "/CN=system:kube-controller-manager" "$client_ext"
# Service-account token signing key pair.
newkey "$pki/sa.key"
openssl ec -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

b64() { base64 -w0 <"$1"; }

# write_kubeconfig FILE USER CERT_NAME
write_kubeconfig() {
  umask 077
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: rightsizer-test
  cluster:
    server: $server
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
}
write_kubeconfig "$state/admin.kubeconfig" admin admin
write_kubeconfig "$state/controller-manager.kubeconfig" system:kube-controller-manager controller-manager

# ---------------------------------------------------------------- processes
# launch NAME ARGS...: runs detached, stdin/stdout/stderr not inherited.
launch() {
  local name="$1"; shift
  setsid "$@" </dev/null >"$logs/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
}

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

launch kube-apiserver "$bin/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$etcd_port" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --secure-port="$api_port" \
  --cert-dir="$pki" \
  --tls-cert-file="$pki/apiserver.crt" \
  --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --authorization-mode=Node,RBAC \
  --service-account-issuer="$server" \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --endpoint-reconciler-type=none \
  --allow-privileged=true \
  --profiling=false

cat >"$state/env" <<EOF
# Generated by hack/k8s/start.sh; source it: . $state/env
export KUBECONFIG='$state/admin.kubeconfig'
export RIGHTSIZER_TEST_KUBECONFIG='$state/admin.kubeconfig'
export RIGHTSIZER_K8S_SERVER='$server'
export RIGHTSIZER_K8S_STATE_DIR='$state'
export RIGHTSIZER_K8S_ETCD='http://127.0.0.1:$etcd_port'
EOF

# The controller-manager starts only once the API server is ready: before that, RBAC's
# bootstrap roles (and kube-system) may not exist yet and it exits with "forbidden".
start_controller_manager() {
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
  if [[ "$stage" == "kube-apiserver /readyz" ]]; then
    if [[ "$("${kc[@]}" get --raw /readyz 2>/dev/null)" == "ok" ]]; then
      start_controller_manager
      started+=(kube-controller-manager)
      stage="ServiceAccount default/default (created by kube-controller-manager)"
      continue
    fi
  elif "${kc[@]}" -n default get serviceaccount default >/dev/null 2>&1; then
    break
  fi
  (( $(date +%s) < deadline )) || fail "timed out after ${timeout_s}s waiting for $stage"
  sleep 0.5
done

elapsed=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")
log "ready in ${elapsed}s: $server (KUBECONFIG=$state/admin.kubeconfig)"
echo "$state/admin.kubeconfig"
