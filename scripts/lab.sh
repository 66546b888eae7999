#!/usr/bin/env bash
# Set up (if needed) and open JupyterLab with odelab and the quickstart notebook.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. "${ODELAB_VENV:-.venv}/bin/activate"
export PANEL_INLINE=1  # Panel's JavaScript from the install, never from a CDN
# No news toast: setup.sh installed binder/overrides.json as the environment's JupyterLab settings
# (a command-line flag cannot do it); no calls home for news or updates.
args=(--ServerApp.ip="${ODELAB_IP:-127.0.0.1}" --LabApp.news_url=None
      --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate)
[ "$(id -u)" = 0 ] && args+=(--allow-root)
exec jupyter lab "${args[@]}" "$@" notebooks/00_quickstart.ipynb
