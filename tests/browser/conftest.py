"""Browser test infrastructure: a real JupyterLab server and Debian's Chromium driven by Playwright.

`scripts/install_browser.sh` installs /usr/bin/chromium (Playwright's own browser download does not
work offline). The server runs with a token on 127.0.0.1, a free port, a temporary root folder, no
news or update checks, and PANEL_INLINE=1 so Panel's JavaScript is served inline. Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
STARTUP_TIMEOUT_S = 90

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


@dataclass(frozen=True)
class LabServer:
    url: str
    token: str
    root: Path

    def lab_url(self, path: str = "lab") -> str:
        return f"{self.url}{path}?token={self.token}"


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.browser)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_status(url: str, token: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    request = urllib.request.Request(
        f"{url}api/status", headers={"Authorization": f"token {token}"}
    )
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"jupyter lab did not answer in {STARTUP_TIMEOUT_S} s:\n{log.read_text()}")


def _write_user_settings(settings_dir: Path) -> None:
    # No "Would you like to receive news?" toast covering the page.
    notification = settings_dir / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory) -> LabServer:
    """A JupyterLab server for the session; yields its url, token and root folder."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/install_browser.sh` first.")
    base = tmp_path_factory.mktemp("lab")
    root, settings, workspaces = base / "root", base / "settings", base / "workspaces"
    for folder in (root, settings, workspaces):
        folder.mkdir()
    _write_user_settings(settings)
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "PANEL_INLINE": "1",
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(workspaces),
        "PYTHONUNBUFFERED": "1",
        # Kernels import the working tree under test, even where odelab is installed elsewhere.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    log = base / "jupyter-lab.log"
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--allow-root",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    with log.open("w") as log_file:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so the kernels it starts are stopped with it
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for_status(url, token, process, log)
        yield LabServer(url=url, token=token, root=root)
    finally:
        _stop(process)
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(log, ARTIFACTS / "jupyter-lab.log")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, through Python Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    """A fresh page; a screenshot named after the test is saved to test-artifacts/ at the end."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    messages = []
    page.on("console", lambda msg: messages.append(f"{msg.type}: {msg.text}"))
    page.console_messages = messages
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    name = request.node.name.replace("/", "_").replace("[", "_").replace("]", "")
    try:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
        (ARTIFACTS / f"{name}.console.txt").write_text("\n".join(messages))
    finally:
        context.close()
