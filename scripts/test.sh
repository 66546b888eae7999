#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: library, notebooks, benchmark smoke run, and
# the browser tests in a real JupyterLab (Debian's chromium is installed when missing).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k solve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
. "${ODELAB_VENV:-.venv}/bin/activate"
export PANEL_INLINE=1
# A compilation cache private to the test run, so timings do not depend on earlier runs.
export ODELAB_CACHE_DIR="${ODELAB_CACHE_DIR:-$(mktemp -d)/jax-cache}"
start=$(date +%s)
set +e
python -m pytest -ra --durations=25 "$@"
status=$?
set -e
echo "test suite took $(( $(date +%s) - start )) s"
exit $status
