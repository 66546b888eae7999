#!/usr/bin/env bash
# Set up (if needed) and run the benchmark suite, with torch and torchdiffeq for the comparison
# in benchmarks/bench_torch.py (the `bench` extra; torch==2.13.0 is a CPU build).
# Extra arguments go to benchmarks/run.py, e.g. `bash scripts/bench.sh --quick`. The devices it
# measures (platform and kind) are printed first and recorded in BENCHMARKS.md's header; on a GPU
# machine install the gpu extra first (`pip install -e ".[gpu]"`) and the same suite runs there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. "${ODELAB_VENV:-.venv}/bin/activate"
if ! python -c "import torch, torchdiffeq" 2>/dev/null; then
  echo "[odelab bench] installing the bench extra (torch, torchdiffeq)"
  python -m pip install --quiet -e ".[bench]"
fi
exec python benchmarks/run.py "$@"
