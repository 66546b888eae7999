"""binder/ builds a working JupyterLab with odelab and its extension (what mybinder.org launches).

The environment is built once per session from binder/ alone (binder_env.py); test_notebooks.py
runs every tutorial in it.
"""

import json
import re
import subprocess
import tomllib
from pathlib import Path

import binder_env
import pytest
import yaml

REPO = binder_env.REPO
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def binder(tmp_path_factory):
    return binder_env.session_env(tmp_path_factory)


def _run(binder, *argv: str, cwd: Path | None = None) -> str:
    """Run a command in the Binder environment; its output without terminal colours."""
    # not from the source copy by default: `python -c` would import odelab from there
    done = subprocess.run(argv, env=binder.environ(), cwd=cwd or binder.prefix,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)


def test_environment_asks_conda_for_python_and_a_new_enough_node():
    # On mybinder.org conda supplies these two; pip cannot build the extension without node >= 20.
    spec = yaml.safe_load((REPO / "binder" / "environment.yml").read_text())
    deps = [d for d in spec["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in deps
    assert "nodejs>=20" in deps
    assert "conda-forge" in spec["channels"]
    # The machine building the test environment must satisfy the same constraint.
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    assert int(node.stdout.strip().lstrip("v").split(".")[0]) >= 20


def test_the_build_installs_odelab_from_the_copy_not_the_checkout(binder):
    where = _run(binder, str(binder.python), "-c", "import odelab; print(odelab.__file__)")
    assert str(binder.prefix) in where and str(REPO / "odelab") not in where


def test_the_extension_is_installed_and_enabled(binder):
    listing = _run(binder, str(binder.bin / "jupyter"), "labextension", "list")
    assert re.search(rf"odelab v{re.escape(VERSION)} enabled\s+OK", listing), listing
    static = binder.prefix / "share" / "jupyter" / "labextensions" / "odelab" / "static"
    assert any(static.glob("remoteEntry.*.js")), "the extension was not built into the wheel"


def test_lab_settings_silence_news_and_update_checks(binder):
    overrides = binder.prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    notification = json.loads(overrides.read_text())["@jupyterlab/apputils-extension:notification"]
    assert notification == {"fetchNews": "false", "checkForUpdates": False}
    config = _run(binder, str(binder.bin / "jupyter"), "lab", "--show-config")
    assert "NeverCheckForUpdate" in config, config


def test_start_exports_panel_inline(binder):
    out = _run(binder, "bash", str(Path("binder") / "start"), str(binder.python), "-c",
               "import os; print(os.environ['PANEL_INLINE'])", cwd=binder.source)
    assert out.strip() == "1"



def test_the_build_fills_the_compilation_cache_for_a_students_first_explorer(binder):
    # postBuild ran `odelab warm` (here for binder_env.WARM_SYSTEMS only; on Binder for every
    # gallery system) into the cache the environment's kernels read
    log = (binder.prefix.parent / "postBuild.log").read_text()
    assert f"explorer first frames into {binder.cache_dir}" in log, log[-3000:]
    warmed = re.search(r"\] lotka_volterra: (\d+) programs", log)
    assert warmed, log[-3000:]
    assert len(list(binder.cache_dir.iterdir())) >= int(warmed.group(1)) >= 5
    # a student's process, started as Binder starts kernels: its first frame compiles nothing
    code = """
import json, odelab as ol
c0, h0 = ol.compile_count(), ol.cache_hit_count()
ex = ol.explore(ol.gallery.lotka_volterra(), view="Gradient")
ex.refresh(); ex.wait()
assert ex.status_level == "success", ex.status
print(json.dumps([ol.compile_count() - c0, ol.cache_hit_count() - h0]))
"""
    out = _run(binder, "bash", str(binder.source / "binder" / "start"), str(binder.python),
               "-c", code)
    programs, from_cache = map(int, re.search(r"^\[(\d+), (\d+)\]$", out, re.M).groups())
    assert programs == int(warmed.group(1)), out
    assert programs - from_cache <= 1, f"{programs - from_cache} of {programs} compiled again"
