#!/usr/bin/env bash
# Build (once) kube-apiserver, kube-controller-manager, etcd and the node's kube-scheduler,
# kubelet and kube-proxy from the Go module proxy, through the wrapper module in hack/k8s/go/.
#
# Usage: hack/k8s/build.sh
#
# Prints the directory holding the binaries on its LAST stdout line;
# progress goes to stderr.
#
# Where the binaries come from, in order:
#   1. $KUBEBUILDER_ASSETS, if set and it holds them all (envtest convention):
#      nothing is built.
#   2. ${RIGHTSIZER_CACHE_DIR:-$HOME/.cache/rightsizer}/k8s/<k8s-version>/bin/,
#      if it already holds them all: nothing is built.
#   3. Otherwise they are built with `go build` into that directory
#      (RIGHTSIZER_K8S_REBUILD=1 forces this).
# See docs/controlplane.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod_dir="$here/go"
binaries=(kube-apiserver kube-controller-manager etcd kube-scheduler kubelet kube-proxy)

log() { printf '[k8s/build] %s\n' "$*" >&2; }
die() { printf '[k8s/build] ERROR: %s\n' "$*" >&2; exit 1; }

has_all() {
  local dir="$1" b
  for b in "${binaries[@]}"; do
    [[ -x "$dir/$b" ]] || return 1
  done
}

# 1. envtest convention.
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  if has_all "$KUBEBUILDER_ASSETS"; then
    log "using binaries from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
    echo "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks one of: ${binaries[*]}; using the build cache instead"
fi

[[ -f "$mod_dir/go.mod" ]] || die "missing $mod_dir/go.mod"
k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$mod_dir/go.mod")"
[[ -n "$k8s_version" ]] || die "cannot find the k8s.io/kubernetes version in $mod_dir/go.mod"

cache_root="${RIGHTSIZER_CACHE_DIR:-$HOME/.cache/rightsizer}/k8s/$k8s_version"
bin_dir="$cache_root/bin"

# 2. Already built for this version.
if [[ "${RIGHTSIZER_K8S_REBUILD:-0}" != "1" ]] && has_all "$bin_dir"; then
  log "Kubernetes $k8s_version binaries already built in $bin_dir"
  echo "$bin_dir"
  exit 0
fi

# 3. Build. Serialise concurrent builds of the same version with a lock.
command -v go >/dev/null 2>&1 || die "the Go toolchain (go >= 1.24) is needed to build Kubernetes $k8s_version"
mkdir -p "$cache_root"
exec 9>"$cache_root/.build.lock"
if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
  log "another build holds $cache_root/.build.lock; waiting for it"
  flock 9
fi
# Someone else may have finished the build while we waited for the lock.
if [[ "${RIGHTSIZER_K8S_REBUILD:-0}" != "1" ]] && has_all "$bin_dir"; then
  log "Kubernetes $k8s_version binaries already built in $bin_dir"
  echo "$bin_dir"
  exit 0
fi

minor="${k8s_version#v1.}"
minor="${minor%%.*}"
build_date="$(date -u +'%Y-%m-%dT%H:%M:%SZ')"
ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

tmp_dir="$(mktemp -d "$cache_root/bin.tmp.XXXXXX")"
trap 'rm -rf "$tmp_dir"' EXIT

log "building Kubernetes $k8s_version (${binaries[*]}) with $(go version | awk '{print $3}'); a first build takes ~8-10 min on 2 cores"
start=$(date +%s)
(
  cd "$mod_dir"
  export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=readonly"
  go build -trimpath -ldflags "$ldflags" -o "$tmp_dir/" \
    "${binaries[@]/#/./cmd/}"
) >&2 || die "go build failed (see the messages above); module dir: $mod_dir"

has_all "$tmp_dir" || die "go build finished but did not produce all of: ${binaries[*]}"
rm -rf "$bin_dir"
mv "$tmp_dir" "$bin_dir"
trap - EXIT
log "built in $(( $(date +%s) - start ))s: $bin_dir"
echo "$bin_dir"
