"""The tutorial files: present, stripped of outputs in git, and runnable in the Binder environment.

The tutorials are executed once per test run, in JupyterLab in Chromium
(tests/browser/test_notebooks_browser.py): a browser run checks what a headless run checks (every
cell runs, no error, the time budget) and also what only a page shows (plots and explorers drawn,
nothing loaded from outside the server). Here: that they are all there and committed without
outputs, and that the Binder environment (binder/, built as in test_binder.py) can import
everything they import, which a run in the test environment cannot tell.
"""

import ast
import subprocess
import sys
from pathlib import Path

import binder_env
import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
BROWSER_RUN = Path(__file__).parent / "browser" / "test_notebooks_browser.py"


def test_there_are_tutorials():
    assert any(p.name.startswith("00_quickstart") for p in NOTEBOOKS)


def test_every_tutorial_is_run_in_the_browser():
    # the browser test parametrises over the same folder, with no filter and no skip
    source = BROWSER_RUN.read_text()
    assert 'NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))' in source
    assert "skip" not in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_outputs_are_stripped(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"


def imported_modules(paths: list[Path]) -> set[str]:
    """The top-level modules the code cells of `paths` import."""
    modules = set()
    for path in paths:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.Import):
                    modules.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    modules.add(node.module.split(".")[0])
    return modules


def test_tutorial_imports_are_found_by_the_parser():
    modules = imported_modules(NOTEBOOKS)
    assert {"odelab", "jax", "numpy", "bokeh", "equinox", "optax", "scipy"} <= modules


@pytest.mark.slow
def test_binder_environment_has_what_the_tutorials_import(tmp_path_factory):
    binder = binder_env.session_env(tmp_path_factory)
    modules = sorted(imported_modules(NOTEBOOKS) - set(sys.stdlib_module_names))
    code = "; ".join(f"import {m}" for m in modules)
    done = subprocess.run([str(binder.python), "-c", code], env=binder.environ(),
                          cwd=binder.prefix, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"the Binder environment lacks a module: {done.stderr[-2000:]}"
