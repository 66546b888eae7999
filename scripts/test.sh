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
status=0
if [ $# -eq 0 ]; then
  echo "[odelab test] front-end unit tests (node)"
  (cd extension && jlpm test) || status=1
fi
echo "[odelab test] python tests"
python -m pytest -ra --durations=30 -n "${ODELAB_TEST_WORKERS:-2}" "$@" || status=1
set -e
echo "test suite took $(( $(date +%s) - start )) s"
exit $status
