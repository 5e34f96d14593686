#!/usr/bin/env bash
# Build (once) the query backends that the `backends` tests run beside Debian's Prometheus 2.42,
# from the Go module proxy, into the cache outside the repo (docs/metrics.md, "Backends").
#
# Usage: hack/backends/build.sh prometheus|victoriametrics
#
# Prints the directory holding the binaries on its LAST stdout line; progress goes to stderr.
#
#   prometheus       Prometheus 3.7.3 (module github.com/prometheus/prometheus v0.307.3):
#                    prometheus and promtool.
#   victoriametrics  VictoriaMetrics v1.153.0, single node: victoria-metrics. Its go.mod asks for
#                    Go >= 1.27.1, so this build alone runs with GOTOOLCHAIN=go1.27.3 (the go command
#                    takes that toolchain from the module proxy like any module).
#
# Into ${RIGHTSIZER_CACHE_DIR:-$HOME/.cache/rightsizer}/backends/<name>-<version>/, unless it
# already holds the binaries (RIGHTSIZER_BACKENDS_REBUILD=1 builds again). `go install` refuses
# Prometheus' go.mod (it has replace directives), so the module's source is fetched with
# `go mod download` and built with `go build` inside it, on its own go.sum. The build runs under
# `nice -n 19`: CI and other work share this machine's two cores. First builds took 765 s
# (Prometheus) and 159 s, plus 45 s to fetch Go 1.27.3 (VictoriaMetrics) here, busy; docs/metrics.md.
set -euo pipefail

log() { printf '[backends/build] %s\n' "$*" >&2; }
die() { printf '[backends/build] ERROR: %s\n' "$*" >&2; exit 1; }

name="${1:-}"
case "$name" in
  prometheus)
    module=github.com/prometheus/prometheus
    module_version=v0.307.3
    version=3.7.3
    packages=(./cmd/prometheus ./cmd/promtool)
    binaries=(prometheus promtool)
    toolchain=local
    ldflags="-s -w"
    for kv in "Version=$version" "Revision=$module_version" "Branch=HEAD" "BuildUser=rightsizer"; do
      ldflags+=" -X github.com/prometheus/common/version.$kv"
    done
    ;;
  victoriametrics)
    module=github.com/VictoriaMetrics/VictoriaMetrics
    module_version=v1.153.0
    version=$module_version
    packages=(./app/victoria-metrics)
    binaries=(victoria-metrics)
    toolchain=go1.27.3
    ldflags="-s -w -X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-metrics-$module_version"
    ;;
  *) die "usage: $0 prometheus|victoriametrics" ;;
esac

backends_root="${RIGHTSIZER_CACHE_DIR:-$HOME/.cache/rightsizer}/backends"
bin_dir="$backends_root/$name-$version"

has_all() {
  local dir="$1" b
  for b in "${binaries[@]}"; do
    [[ -x "$dir/$b" ]] || return 1
  done
}

if [[ "${RIGHTSIZER_BACKENDS_REBUILD:-0}" != "1" ]] && has_all "$bin_dir"; then
  log "$name $version already built in $bin_dir"
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "the Go toolchain (go >= 1.24) is needed to build $name $version"
mkdir -p "$backends_root"
# Serialise concurrent builds of the same backend and version.
exec 9>"$backends_root/.$name-$version.lock"
if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
  log "another build holds $backends_root/.$name-$version.lock; waiting for it"
  flock 9
fi
if [[ "${RIGHTSIZER_BACKENDS_REBUILD:-0}" != "1" ]] && has_all "$bin_dir"; then
  log "$name $version already built in $bin_dir"
  echo "$bin_dir"
  exit 0
fi

export GOTOOLCHAIN="$toolchain" CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly"
start=$(date +%s)
log "fetching $module@$module_version through the Go module proxy"
src_dir="$(go mod download -json "$module@$module_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -n "$src_dir" && -f "$src_dir/go.mod" ]] || die "go mod download gave no source directory for $module@$module_version"

tmp_dir="$(mktemp -d "$backends_root/.$name-$version.tmp.XXXXXX")"
trap 'rm -rf "$tmp_dir"' EXIT
log "building $name $version (${binaries[*]}) with GOTOOLCHAIN=$toolchain under nice -n 19; a first build takes minutes"
(
  cd "$src_dir"
  nice -n 19 go build -trimpath -ldflags "$ldflags" -o "$tmp_dir/" "${packages[@]}"
) >&2 || die "go build failed (see the messages above); source: $src_dir"

has_all "$tmp_dir" || die "go build finished but did not produce all of: ${binaries[*]}"
rm -rf "$bin_dir"
chmod 755 "$tmp_dir"
mv "$tmp_dir" "$bin_dir"
trap - EXIT
log "built $name $version in $(( $(date +%s) - start ))s: $bin_dir"
echo "$bin_dir"
