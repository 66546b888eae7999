"""Every tutorial in notebooks/ runs in JupyterLab in Chromium, the way a reader runs it: open it,
Run All, look.

One page serves all tutorials in turn (as a reader's page does: plain Bokeh plots, explorers and
the sidebar's explorer tabs all meet in it), against the session's JupyterLab server. For each
tutorial: no cell fails; every `explore(...)` output and every plain Bokeh output shows a drawn
canvas; the console has no Panel/Bokeh loading errors; every request of the page goes to the
Jupyter server (data: and blob: URLs excepted); the tutorial keeps its time budget. Screenshots go
to test-artifacts/notebooks/, and the README's pictures (docs/images/) are retaken here.

This is the only place the tutorials are executed (tests/test_notebooks.py checks the files).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import time
from pathlib import Path

import pytest
from jupyterlab_page import (
    ARTIFACTS,
    DRAWN,
    close_notebook,
    drawn_pixels,
    kernel_eval,
    loading_errors,
    new_page,
    open_lab,
    open_notebook,
    open_sidebar,
    output_area,
    page_sources,
    requests_leaving,
    run_all_cells,
    save_page_artifacts,
    show_whole,
    shut_down_kernels,
    wait_drawn,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
SHOTS = ARTIFACTS / "notebooks"
IMAGES = REPO / "docs" / "images"
# A hang guard, not a timing test: each tutorial runs in about a minute on a 2-core CPU; the
# times measured are written to ARTIFACTS/notebooks/run_all_seconds.txt (benchmarks own speed).
RUN_ALL_TIMEOUT_S = 600
RENDER_TIMEOUT_S = 120  # after Run All: the explorer connects, then draws
EXEC_MIMES = ("application/vnd.holoviews_exec.v0+json", "application/vnd.bokehjs_exec.v0+json")


@pytest.fixture(scope="module")
def lab(browser, jupyter_lab):
    """One JupyterLab page for all tutorials, which are copied to tutorials/ on the server."""
    folder = jupyter_lab.root / "tutorials"
    folder.mkdir(exist_ok=True)
    for path in NOTEBOOKS:
        shutil.copy(path, folder / path.name)
    page = new_page(browser, height=1300)  # tall enough for a whole explorer
    try:
        open_lab(page, jupyter_lab)
        yield page
    finally:
        save_page_artifacts(page, "notebooks-page")
        shut_down_kernels(page)
        page.context.close()


def test_there_is_a_browser_run_for_every_tutorial():
    assert [p.name for p in NOTEBOOKS] == sorted(
        p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    assert any(p.name.startswith("00_quickstart") for p in NOTEBOOKS)


def test_no_news_toast_covers_the_page(lab):
    # the project's settings (binder/overrides.json) turn the news question off; without them
    # JupyterLab asks "Would you like to get notified about official Jupyter news?" at start
    lab.wait_for_timeout(5000)
    assert lab.get_by_text("Jupyter news").count() == 0


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_tutorial_runs_in_jupyterlab(lab, jupyter_lab, path):
    page = lab
    seen = {"requests": len(page.requests), "console": len(page.console_messages),
            "failures": len(page.failures)}
    SHOTS.mkdir(parents=True, exist_ok=True)
    open_notebook(page, f"tutorials/{path.name}")
    try:
        start = time.perf_counter()
        cells = run_all_cells(page, timeout_ms=RUN_ALL_TIMEOUT_S * 1000)
        elapsed = time.perf_counter() - start
        with open(SHOTS / "run_all_seconds.txt", "a") as f:
            f.write(f"{path.stem} {elapsed:.1f}\n")

        code = [(k, c) for k, c in enumerate(cells) if c["cell_type"] == "code"]
        errors = [f"cell {k}: {o.get('ename')}: {o.get('evalue')}" for k, c in code
                  for o in c["outputs"] if o["output_type"] == "error"]
        assert not errors, errors
        not_run = [k for k, c in code if c["source"].strip() and c["execution_count"] is None]
        assert not not_run, f"cells {not_run} did not run"

        views = [k for k, c in code if "explore(" in _source(c)]
        for k in views:
            assert any(EXEC_MIMES[0] in o.get("data", {}) for o in c_outputs(cells, k)), (
                f"cell {k} calls explore(...) but shows no Panel output")
        # plain Bokeh plots (`show`) and explorers; Panel's own hidden outputs (browser info,
        # notifications) carry the Panel mime type too but draw nothing
        plots = sorted(set(views) | {k for k, c in code for o in c["outputs"]
                                     if EXEC_MIMES[1] in o.get("data", {})})
        for k in plots:
            output = wait_drawn(page, output_area(page, k), f"the output of cell {k}",
                                RENDER_TIMEOUT_S, SHOTS / f"{path.stem}-not-drawn-cell{k}.png")
            if k in views:
                # the first frame fills in on a worker thread: the picture once it is whole
                # (the stage markers live in Bokeh's shadow DOM: a text locator pierces it)
                wait_until(page, lambda area=output: area.get_by_text(
                    re.compile("computing…|waiting")).count() == 0, RENDER_TIMEOUT_S)
                show_whole(output)
                output.screenshot(path=str(SHOTS / f"{path.stem}-explorer-cell{k}.png"))
        page.screenshot(path=str(SHOTS / f"{path.stem}.png"))

        extra = EXTRA_CHECKS.get(path.stem)
        if extra is not None:
            extra(page, cells, views)
    finally:
        close_notebook(page)

    assert loading_errors(page, seen["console"]) == []
    assert page.failures[seen["failures"]:] == []
    outside = requests_leaving(page, jupyter_lab.host, seen["requests"])
    assert outside == [], f"requests that leave the Jupyter server: {outside}"


def _source(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def c_outputs(cells: list[dict], k: int) -> list[dict]:
    return cells[k]["outputs"]


# ------------------------------------------------------------------------------------------------
# what some tutorials check besides
# ------------------------------------------------------------------------------------------------
def _quickstart_sidebar(page, cells, views):
    """The sidebar lists the quickstart's system; its explorer tab draws in the same page (where a
    plain Bokeh plot came first). The README's sidebar picture is this screen."""
    open_sidebar(page)
    item = page.locator("#odelab-sidebar .jp-odelab-item", has_text="predator_prey").first
    item.wait_for(timeout=60_000)
    item.click()
    tab = page.locator(".jp-odelab-display-tab:visible")
    tab.wait_for()
    deadline = time.monotonic() + RENDER_TIMEOUT_S
    while drawn_pixels(tab) < DRAWN:
        assert time.monotonic() < deadline, "the explorer tab opened from the sidebar is blank"
        page.wait_for_timeout(500)
    size = page.viewport_size
    page.set_viewport_size({"width": 1400, "height": 900})  # the README's picture
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SHOTS / "00_quickstart-sidebar-tab.png"))
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / "jupyterlab-sidebar.png"))
    page.set_viewport_size(size)
    page.evaluate("() => window.jupyterapp.shell.currentWidget.close()")
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
    page.locator(".jp-NotebookPanel:visible").first.wait_for()


def _classroom_state(page, cells, views):
    """After Run All the screen shows what Python holds: the last slider value set in code, the
    tab chosen before the explorer was drawn, and the trajectory computed for that value."""
    (k,) = views
    python = json.loads(ast.literal_eval(kernel_eval(page, """__import__("json").dumps({
        "b": explorer.values["b"], "a": explorer.values["a"], "view": explorer.view,
        "x": [float(v) for v in explorer.plots.trajectory.source.data["x"]]})""")))
    assert python["b"] == 3.5 and python["view"] == "Phase portrait"  # what the cells set
    area = output_area(page, k)
    titles = area.locator(".bk-slider-title").all_inner_texts()
    shown = {t.split(" ", 1)[0]: float(t.rsplit(":", 1)[1]) for t in titles if ":" in t}
    assert shown["b"] == pytest.approx(python["b"], rel=1e-3), titles
    assert shown["a"] == pytest.approx(python["a"], rel=1e-3), titles
    active = area.locator(".bk-tab.bk-active").first.inner_text().strip()
    assert active == python["view"]
    n = len(python["x"])
    page_x = [d["x"] for d in page_sources(page)
              if len(d.get("t", [])) == n and "x" in d and "y" in d]
    assert page_x == [pytest.approx(python["x"], rel=1e-12)]
    show_whole(area)
    area.screenshot(path=str(SHOTS / "09_classroom_phase_planes-state.png"))
    IMAGES.mkdir(parents=True, exist_ok=True)
    area.screenshot(path=str(IMAGES / "explorer.png"))


EXTRA_CHECKS = {
    "00_quickstart": _quickstart_sidebar,
    "09_classroom_phase_planes": _classroom_state,
}
