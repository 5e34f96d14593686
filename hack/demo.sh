#!/usr/bin/env bash
# The main job, on a fresh machine: install what is missing, then run the local demo
# (control plane, Prometheus with demo history, the operator producing recommendations).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/hack/setup.sh"
exec "$root/.venv/bin/python" "$root/hack/demo.py" "$@"
