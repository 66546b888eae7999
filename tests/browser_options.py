"""Where Chromium is and how it runs in the tests (tests/conftest.py's `browser` fixture)."""

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")  # Debian's, installed by scripts/install_browser.sh

# Keep Chromium from calling home: no component updates, sync, translation or metrics.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-dev-shm-usage",
]
