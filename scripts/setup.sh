#!/usr/bin/env bash
# Set up everything odelab needs on a fresh clone: a virtual environment in .venv with odelab
# (its JupyterLab extension built into the install) and the test tools. Safe to run again: it
# skips what is already in place. Usage: bash scripts/setup.sh [--browser]
#   --browser  also install Debian's chromium for the browser tests (needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${ODELAB_VENV:-.venv}

say() { printf '\033[1m[odelab setup]\033[0m %s\n' "$*"; }

if ! command -v "$PYTHON" >/dev/null; then
  say "No $PYTHON found. Install Python 3.11 or newer first."; exit 1
fi
"$PYTHON" - <<'PY' || { echo "odelab needs Python 3.11 or newer"; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"

# Reinstall only when the project definition or the extension sources changed.
stamp="$VENV/.odelab-installed"
want=$(cat pyproject.toml extension/package.json extension/yarn.lock 2>/dev/null | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! python -c "import odelab" 2>/dev/null; then
  say "installing odelab and its dependencies (first time: a few minutes)"
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -e ".[test]"
  echo "$want" > "$stamp"
else
  say "odelab already installed in $VENV"
fi

if [ "${1:-}" = "--browser" ]; then
  bash scripts/install_browser.sh
fi
say "ready: source $VENV/bin/activate"
