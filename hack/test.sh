#!/usr/bin/env bash
# The test command: set up (idempotent), lint, then the whole suite against real servers
# (Prometheus and a kube-apiserver started by the tests). Extra arguments go to pytest (one session).
#
# The tests marked `backends` (the history queries on Prometheus 3 and VictoriaMetrics, built once from
# the Go module proxy by hack/backends/build.sh, 10 minutes and more the first time) run only with
# RIGHTSIZER_BACKENDS=1, e.g. `RIGHTSIZER_BACKENDS=1 bash hack/test.sh -m backends`; otherwise
# tests/conftest.py deselects them, and pytest counts them as deselected.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash hack/setup.sh
.venv/bin/ruff check operator tests bench hack
.venv/bin/ruff format --check operator tests bench hack >/dev/null || {
  echo "ruff format would reformat files: run .venv/bin/ruff format operator tests bench hack" >&2
  exit 1
}
# Static checks (configured in pyproject.toml): strict types over the package, and the import
# contract that keeps the engine, model and settings free of Kubernetes and Prometheus.
.venv/bin/mypy
.venv/bin/lint-imports --no-cache --no-logo
if [[ "${RIGHTSIZER_BACKENDS:-0}" != "1" ]]; then
  echo "hack/test.sh: tests marked 'backends' are deselected (RIGHTSIZER_BACKENDS=1 runs them)" >&2
fi
# With arguments, one pytest session runs what they select. Without (as README and CI run it), the
# node tests (marker node: minutes of real usage each, on the one node a machine can have, so one
# after the other) run in a session of their own beside the rest, so that their waiting overlaps
# the other tests' work; their output follows the rest's. PYTEST_ADDOPTS reaches both.
if (($#)); then
  exec .venv/bin/python -m pytest "$@"
fi
# Short paths: the node's containerd puts unix sockets under its test's directory, and a socket's
# path may not pass 107 bytes.
runs="$(mktemp -d /tmp/rsz.XXXXXX)"
echo "hack/test.sh: the node tests run beside the others (pytest -m node); log: $runs/node.log" >&2
# A background job of a script starts with SIGINT ignored, and Python keeps it so: the node session
# puts Python's own handler back, so that SIGINT stops it as Ctrl-C would (its fixtures stop the node).
.venv/bin/python -c 'import signal, sys, pytest
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.exit(pytest.main(sys.argv[1:]))' -m node --basetemp="$runs/n" >"$runs/node.log" 2>&1 &
node_tests=$!
trap 'kill -INT "$node_tests" 2>/dev/null; wait "$node_tests"' INT TERM
rest_status=0
.venv/bin/python -m pytest -m "not node" --basetemp="$runs/r" || rest_status=$?
node_status=0
wait "$node_tests" || node_status=$?
trap - INT TERM
echo
echo "==================== the node tests (pytest -m node, $runs/node.log) ===================="
cat "$runs/node.log"
echo "hack/test.sh: pytest -m 'not node' exited $rest_status, pytest -m node exited $node_status" >&2
((rest_status == 0 && node_status == 0))
