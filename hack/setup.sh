#!/usr/bin/env bash
# Install what rightsizer's tests and demo need, idempotently, on a fresh Debian machine:
#   - Debian's prometheus (server + promtool), openssl and chromium (the HTML report's test)
#   - as root, for the real node: Debian's containerd, runc, containernetworking-plugins,
#     iproute2, util-linux (nsenter, setpriv) and iptables (kube-proxy); podman and mmdebstrap
#     to build the operator's image (hack/images/operator.sh, on first use by tests/test_install.py)
#   - a virtualenv in .venv with rightsizer and its test tools
#   - kube-apiserver, kube-controller-manager and etcd, built once from the Go module proxy
#     and cached outside the repo (hack/k8s/build.sh; KUBEBUILDER_ASSETS is honoured)
# Progress goes to stderr. Prints nothing on stdout.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf '[setup] %s\n' "$*" >&2; }

# The Go builds (minutes on a new machine) need nothing that is installed below: they run
# meanwhile, and are waited for at the end.
"$root/hack/k8s/build.sh" >/dev/null &
k8s_build=$!
"$root/hack/images/build.sh" >/dev/null &
images_build=$!
trap 'kill "$k8s_build" "$images_build" 2>/dev/null || true' EXIT

missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The backtest's HTML report is opened in a real headless browser by its test (tests/test_backtest_html.py).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [[ $(id -u) -eq 0 ]]; then
  command -v containerd >/dev/null 2>&1 || missing+=(containerd)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
fi
if ((${#missing[@]})); then
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { log "ERROR: need root or sudo to install: ${missing[*]}"; exit 1; }
    sudo="sudo"
  fi
  mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing Debian packages: ${packages[*]}"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
fi

python="${PYTHON:-python3}"
if [[ ! -x "$root/.venv/bin/python" ]]; then
  log "creating $root/.venv"
  "$python" -m venv "$root/.venv"
fi
log "installing rightsizer into .venv"
"$root/.venv/bin/pip" install -q --disable-pip-version-check -e "$root[test]" >&2

command -v kubectl >/dev/null 2>&1 || { log "ERROR: kubectl is needed on PATH"; exit 1; }
wait "$k8s_build" || { log "ERROR: building Kubernetes failed (hack/k8s/build.sh)"; exit 1; }
wait "$images_build" || { log "ERROR: building the node's images failed (hack/images/build.sh)"; exit 1; }
trap - EXIT
log "ready"
