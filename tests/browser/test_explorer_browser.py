"""The explorer in a real JupyterLab: drag a parameter slider, change the gradient method, and see
the plots change in the kernel and in the page. Screenshots go to test-artifacts/ (one is also
kept as docs/images/explorer.png for the README).
"""

import ast
import json
import shutil
from pathlib import Path

import pytest
from jupyterlab_page import errors_in, new_notebook, open_lab, run_cell

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
# the first display compiles the solve and gradient programs in the kernel: slow on 2 cores
FIRST_RENDER_MS = 300_000

SETUP = """
import json
import odelab as ol
ex = ol.explore(ol.gallery.lotka_volterra(), n_save=101, solver="tsit5")
ex
"""

STATE = """json.dumps({
    "alpha": ex.values["alpha"],
    "method": ex.method,
    "x": [float(v) for v in ex.plots.trajectory.source.data["x"][::20]],
    "gradient": [float(v) for v in ex.plots.gradient.source.data["method"]],
    "status": ex.status_level,
})"""

# Evaluates a Python expression in the notebook's kernel as a `user_expressions` entry of an
# execute request: the value comes back in the reply itself. (Printed output is routed by the
# kernel's current parent message, which a widget callback from the page can leave pointing
# elsewhere.)
KERNEL_EVAL = """async (expression) => {
    const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    const future = kernel.requestExecute(
        {code: '', store_history: false, user_expressions: {value: expression}});
    const reply = await future.done;
    const value = reply.content.user_expressions.value;
    return value.status === 'ok' ? value.data['text/plain'] : 'ERROR ' + value.evalue;
}"""

# The trajectory's ColumnDataSource as the page holds it (Bokeh's documents in the browser).
PAGE_TRAJECTORY = """() => {
    const docs = new Set((window.Bokeh.documents || []).concat(
        Object.values(window.Bokeh.index).map((view) => view.model && view.model.document)));
    for (const doc of docs) {
        if (!doc) continue;
        for (const model of doc.all_models) {
            const data = model.data;
            if (data && data.t !== undefined && data.x !== undefined && data.t.length === 101) {
                return Array.from(data.x).filter((_, i) => i % 20 === 0);
            }
        }
    }
    return null;
}"""


def kernel_state(page) -> dict:
    """The explorer's state, read straight from the kernel (no notebook cell, so the explorer's
    output and the active cell are left alone)."""
    text = page.evaluate(KERNEL_EVAL, STATE)
    assert not text.startswith("ERROR"), text
    return json.loads(ast.literal_eval(text))  # the repr of the JSON string


def shot(page, name: str):
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_explorer_slider_and_method_change_update_the_plots(page, jupyter_lab):
    open_lab(page, jupyter_lab)
    new_notebook(page)
    outputs = run_cell(page, SETUP, timeout_ms=FIRST_RENDER_MS)
    assert errors_in(outputs) == []
    page.locator(".bk-slider-title", has_text="alpha").first.wait_for(timeout=FIRST_RENDER_MS)
    page.wait_for_function(f"({PAGE_TRAJECTORY})() !== null", timeout=FIRST_RENDER_MS)
    before = kernel_state(page)
    assert before["status"] == "success"
    page_before = page.evaluate(PAGE_TRAJECTORY)
    assert page_before == pytest.approx(before["x"], rel=1e-9)
    shot(page, "explorer-initial")

    # drag the alpha slider's handle to the right and release it
    group = page.locator(".bk-input-group", has=page.locator(".bk-slider-title",
                                                             has_text="alpha"))
    handle = group.locator(".noUi-handle").first
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 60, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    page.wait_for_function(
        f"(old) => {{ const now = ({PAGE_TRAJECTORY})(); "
        "return now !== null && now.some((v, i) => Math.abs(v - old[i]) > 1e-9); }",
        arg=page_before, timeout=120_000)
    after = kernel_state(page)
    assert after["alpha"] > before["alpha"]
    assert after["x"] != before["x"]
    assert page.evaluate(PAGE_TRAJECTORY) == pytest.approx(after["x"], rel=1e-9)

    # change the gradient method in its menu
    menu = page.locator("select", has=page.locator("option", has_text="backsolve"))
    menu.select_option(label=next(
        o for o in menu.locator("option").all_inner_texts() if o.startswith("backsolve")))
    page.wait_for_timeout(500)
    for _ in range(240):  # the new method compiles once in the kernel
        state = kernel_state(page)
        if state["method"] == "backsolve" and state["gradient"] != after["gradient"]:
            break
        page.wait_for_timeout(1000)
    assert state["method"] == "backsolve"
    assert state["status"] in ("success", "warning")
    # backsolve approximates the same gradient: close to the previous method's, not identical
    assert state["gradient"] == pytest.approx(after["gradient"], rel=1e-3)
    assert state["gradient"] != after["gradient"]

    shot(page, "explorer-after-changes")

    # a click on the phase plane starts a trajectory there (a Bokeh Tap event to the kernel)
    page.locator(".bk-tab", has_text="Phase portrait").first.click()
    page.wait_for_timeout(1000)
    # the phase figure is the largest canvas on show (titles are drawn inside the canvas)
    boxes = [b for b in (c.bounding_box() for c in page.locator("canvas:visible").all()) if b]
    box = max(boxes, key=lambda b: b["width"] * b["height"])
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.45)
    for _ in range(60):
        if page.evaluate(KERNEL_EVAL, "len(ex.plots.phase.extra.data['xs'])") == "1":
            break
        page.wait_for_timeout(1000)
    assert page.evaluate(KERNEL_EVAL, "len(ex.plots.phase.extra.data['xs'])") == "1"
    final = shot(page, "explorer-phase-portrait")
    (REPO / "docs" / "images").mkdir(parents=True, exist_ok=True)
    shutil.copy(final, REPO / "docs" / "images" / "explorer.png")
