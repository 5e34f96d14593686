#!/usr/bin/env bash
# Build (once) the container images of the real node, without a registry or a base image:
#   rightsizer.local/pause:v1  the pod sandbox image (containerd's sandbox_image)
#   rightsizer.local/load:v1   CPU and memory demand on a schedule (hack/images/go/cmd/load)
# Each is one static Go binary in a one-layer docker-archive tar (mkimage.py), cached in
# ${RIGHTSIZER_CACHE_DIR:-$HOME/.cache/rightsizer}/images/<hash of the sources>/.
#
# Usage: hack/images/build.sh
# Prints the directory holding pause.tar and load.tar on its LAST stdout line; progress on stderr.
# hack/k8s/start.sh --node imports every *.tar of that directory into the node's containerd.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
images=(pause load)
log() { printf '[images/build] %s\n' "$*" >&2; }

key="$(cd "$here" && cat build.sh mkimage.py go/go.mod go/cmd/*/main.go | sha256sum | cut -c1-16)"
out="${RIGHTSIZER_CACHE_DIR:-$HOME/.cache/rightsizer}/images/$key"

has_all() {
  local image
  for image in "${images[@]}"; do [[ -s "$out/$image.tar" ]] || return 1; done
}

if has_all; then
  log "images already built in $out"
  echo "$out"
  exit 0
fi

command -v go >/dev/null 2>&1 || { log "ERROR: the Go toolchain is needed to build the node's images"; exit 1; }
mkdir -p "$(dirname "$out")"
tmp="$(mktemp -d "$out.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
(
  cd "$here/go"
  CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=readonly" \
    go build -trimpath -ldflags "-s -w" -o "$tmp/bin/" ./cmd/pause ./cmd/load
) >&2
for image in "${images[@]}"; do
  python3 "$here/mkimage.py" --tag "rightsizer.local/$image:v1" --binary "$tmp/bin/$image" --out "$tmp/$image.tar"
done
rm -rf "$tmp/bin" "$out"
mv "$tmp" "$out"
trap - EXIT
log "built ${images[*]} into $out"
echo "$out"
