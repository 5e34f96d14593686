#!/usr/bin/env bash
# The test command: set up (idempotent), lint, then the whole suite against real servers
# (Prometheus and a kube-apiserver started by the tests). Extra arguments go to pytest.
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
exec .venv/bin/python -m pytest "$@"
