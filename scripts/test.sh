#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: library, notebooks, benchmark smoke run, and
# the browser tests in a real JupyterLab (Debian's chromium is installed when missing).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k solve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
. "${ODELAB_VENV:-.venv}/bin/activate"
export PANEL_INLINE=1
# A compilation cache private to the test run, so timings do not depend on earlier runs. Tests
# build many equal programs from new function objects; the cache compiles each once. Only
# programs that took a second or more are stored: fewer executables are serialised to disk (a CI
# worker once crashed inside XLA's serialiser), and those are where the time goes.
export ODELAB_CACHE_DIR="${ODELAB_CACHE_DIR:-$(mktemp -d)/jax-cache}"
export ODELAB_CACHE_MIN_COMPILE_S="${ODELAB_CACHE_MIN_COMPILE_S:-1.0}"
start=$(date +%s)
rm -f test-artifacts/first_frame_seconds.txt test-artifacts/notebooks/run_all_seconds.txt
set +e
status=0
if [ $# -eq 0 ]; then
  echo "[odelab test] front-end unit tests (node)"
  (cd extension && jlpm test) || status=1
fi
echo "[odelab test] python tests"
# tests/conftest.py keeps the browser tests on one worker (one JupyterLab server, one Chromium).
# A crashed worker ends the run at once (a replaced worker once left the scheduler waiting).
python -m pytest -ra --durations=30 -n "${ODELAB_TEST_WORKERS:-2}" --max-worker-restart=0 "$@" || status=1
set -e
# what the browser tests measured (not asserted: benchmarks own speed)
for f in test-artifacts/first_frame_seconds.txt test-artifacts/notebooks/run_all_seconds.txt; do
  if [ -f "$f" ]; then echo "[odelab test] $f:"; cat "$f"; fi
done
echo "test suite took $(( $(date +%s) - start )) s"
exit $status
