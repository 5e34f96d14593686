#!/usr/bin/env bash
# Build (once) the operator's image from the project's Dockerfile, for real, with podman, and save
# it as an OCI archive that hack/k8s's node imports into its containerd (no registry needed).
#
# Usage: hack/images/operator.sh
# Prints the path of the OCI archive on its LAST stdout line; progress goes to stderr.
#
# No base image can be pulled on these machines, so the Dockerfile's BASE_IMAGE build argument
# (python:3.11-slim by default, elsewhere) is a local one: a Debian bookworm root file system
# made by Debian's mmdebstrap with python3 in it (Python 3.11, like python:3.11-slim), imported
# with `podman import`. Both are cached under ${RIGHTSIZER_CACHE_DIR:-$HOME/.cache/rightsizer}/
# operator-image/, keyed by what they are built from:
#   base-<hash of this script's base recipe and the apt sources>.tar
#   <hash of the base key, Dockerfile, .dockerignore and the build context>/rightsizer.oci.tar
# Only the newest archive is kept. RIGHTSIZER_IMAGE_REBUILD=1 rebuilds both.
#
# pip inside the build must trust the certificate authorities this machine trusts: the machine's
# CA bundle is mounted read-only into the build's RUN steps (podman build --volume), so it is
# used by pip but never stored in the image.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
log() { printf '[images/operator] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

image="${RIGHTSIZER_IMAGE:-ghcr.io/rightsizer/rightsizer:0.1.0}"
suite=bookworm
base_packages=python3,python3-venv,ca-certificates,passwd
# The root directory is made in a private temporary directory (mode 0700): without the chmod, the
# image's non-root user could not reach anything in it (runc: "executable file not found").
base_options=(--variant=minbase --format=tar "--include=$base_packages" '--customize-hook=chmod 0755 "$1"')
apt_sources=/etc/apt/sources.list.d/debian.sources
[[ -f "$apt_sources" ]] || apt_sources=/etc/apt/sources.list
ca_bundle=/etc/ssl/certs/ca-certificates.crt
cache="${RIGHTSIZER_CACHE_DIR:-$HOME/.cache/rightsizer}/operator-image"
rebuild="${RIGHTSIZER_IMAGE_REBUILD:-0}"

for tool in podman mmdebstrap sha256sum flock; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "'$tool' is needed (Debian: podman mmdebstrap; hack/setup.sh installs them when run as root)"
done
[[ $(id -u) -eq 0 ]] || die "building the image needs root (podman's storage and the node's containerd are root's)"

base_key="$(printf '%s\n' "$suite" "${base_options[@]}" | cat - "$apt_sources" | sha256sum | cut -c1-16)"
base_tar="$cache/base-$base_key.tar"
base_image="localhost/rightsizer-base:$base_key"
# The build context is what .dockerignore lets through: pyproject.toml, README.md, operator/rightsizer.
context_key="$(
  cd "$root"
  {
    printf '%s\n' "$base_key" "$image"
    cat Dockerfile .dockerignore pyproject.toml README.md
    find operator/rightsizer -type f ! -name '*.pyc' ! -path '*/__pycache__/*' | LC_ALL=C sort |
      while read -r file; do printf '%s\n' "$file"; cat "$file"; done
  } | sha256sum | cut -c1-16
)"
out_dir="$cache/$context_key"
archive="$out_dir/rightsizer.oci.tar"

if [[ "$rebuild" != "1" && -s "$archive" ]]; then
  log "image already built: $archive"
  echo "$archive"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.build.lock"
if ! flock -n 9; then
  log "another build holds $cache/.build.lock; waiting for it"
  flock 9
fi
if [[ "$rebuild" != "1" && -s "$archive" ]]; then
  log "image already built: $archive"
  echo "$archive"
  exit 0
fi

started=$(date +%s)
if [[ "$rebuild" == "1" || ! -s "$base_tar" ]]; then
  log "making the base image's root file system with mmdebstrap ($suite: $base_packages); about a minute"
  rm -f "$base_tar.partial"
  mmdebstrap --quiet "${base_options[@]}" "$suite" "$base_tar.partial" "$apt_sources" >&2 ||
    die "mmdebstrap failed"
  mv "$base_tar.partial" "$base_tar"
  log "base made in $(($(date +%s) - started))s: $base_tar"
fi
if [[ "$rebuild" == "1" ]] || ! podman image exists "$base_image"; then
  log "importing the base as $base_image"
  podman import --quiet "$base_tar" "$base_image" >/dev/null || die "podman import failed"
fi

log "building $image from $root/Dockerfile (BASE_IMAGE=$base_image)"
podman build --network=host --volume "$ca_bundle:$ca_bundle:ro" \
  --build-arg "BASE_IMAGE=$base_image" --tag "$image" "$root" >&2 || die "podman build failed"

tmp_dir="$(mktemp -d "$cache/$context_key.tmp.XXXXXX")"
trap 'rm -rf "$tmp_dir"' EXIT
podman save --quiet --format oci-archive --output "$tmp_dir/rightsizer.oci.tar" "$image" ||
  die "podman save failed"
rm -rf "$out_dir"
mv "$tmp_dir" "$out_dir"
trap - EXIT
# Only the newest base and archive are kept (the archive is about 160 MiB), and no dangling image
# in podman's storage: the builder's layers are of no use once the sources change.
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$context_key" -exec rm -rf {} +
find "$cache" -mindepth 1 -maxdepth 1 -name 'base-*.tar' ! -name "base-$base_key.tar" -delete
podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/rightsizer-base:' |
  grep -v ":$base_key\$" | xargs -r podman rmi >/dev/null || true
podman image prune --force >/dev/null
log "built $image in $(($(date +%s) - started))s: $archive ($(du -m "$archive" | cut -f1) MiB compressed;" \
  "$(podman image inspect --format '{{.Size}}' "$image" | awk '{printf "%d MiB", $1 / 1048576}') unpacked)"
echo "$archive"
