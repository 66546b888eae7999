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
want=$(cat pyproject.toml extension/package.json extension/yarn.lock \
  $(find extension/src extension/style notebooks -type f 2>/dev/null | sort) 2>/dev/null \
  | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! python -c "import odelab" 2>/dev/null; then
  say "installing odelab and its dependencies (first time: a few minutes)"
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -e ".[test]"
  echo "$want" > "$stamp"
else
  say "odelab already installed in $VENV"
fi

# JupyterLab settings for everyone using this environment, from the project's own file (the
# one binder/postBuild installs on Binder): no "Jupyter news?" toast, no update checks.
settings="$(python -c 'import sys; print(sys.prefix)')/share/jupyter/lab/settings"
mkdir -p "$settings"
python - "$settings/overrides.json" binder/overrides.json <<'PY'
import json, pathlib, sys
target, ours = pathlib.Path(sys.argv[1]), json.loads(pathlib.Path(sys.argv[2]).read_text())
current = json.loads(target.read_text()) if target.exists() else {}
if {k: current.get(k) for k in ours} != ours:  # keep any other plugin's overrides
    target.write_text(json.dumps({**current, **ours}, indent=2) + "\n")
    print(f"[odelab setup] JupyterLab settings written to {target}")
PY

if [ "${1:-}" = "--browser" ]; then
  bash scripts/install_browser.sh
fi
say "ready: source $VENV/bin/activate"
