#!/usr/bin/env bash
# Set up (if needed) and build the API reference from the docstrings: static HTML in docs/api/
# (open docs/api/index.html; it loads nothing from the network). Rebuilding takes a few seconds.
# Usage: bash scripts/docs.sh [OUTPUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${ODELAB_VENV:-.venv}/bin/activate"
exec python docs/build_api.py "${1:-docs/api}"
