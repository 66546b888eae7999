"""Every tutorial notebook runs top to bottom, within its budget, with outputs stripped in git.

The notebooks run once, in the environment Binder builds from binder/ (see binder_env.py), with a
kernel started through binder/start: that checks the tutorials and the Binder setup together.
"""

import time
from pathlib import Path

import binder_env
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
BUDGET_SECONDS = 120  # the promise: each tutorial runs in under 2 minutes on a 2-core CPU
SLACK = 2.0  # the suite runs two workers side by side on the 2 cores


@pytest.fixture(scope="module")
def binder(tmp_path_factory):
    return binder_env.session_env(tmp_path_factory)


def test_there_are_tutorials():
    assert any(p.name.startswith("00_quickstart") for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_outputs_are_stripped(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, binder, tmp_path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, km=binder.kernel_manager(), timeout=BUDGET_SECONDS * 2,
                            resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    client.execute(env=binder.environ())
    elapsed = time.perf_counter() - start
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    assert elapsed < BUDGET_SECONDS * SLACK, f"{path.name} took {elapsed:.0f} s"
