"""Plain Bokeh plots and odelab explorers in one notebook, in either order: every one is drawn.

Plain Bokeh (`output_notebook(INLINE)` + `show`) and Panel each load their own BokehJS into the
page; before odelab guarded Panel's loader, a plain Bokeh load that came first left every Panel
view of the page blank. Each order runs in a fresh page, so what the page loaded first is known.
"""

import pytest
from jupyterlab_page import (
    ARTIFACTS,
    errors_in,
    loading_errors,
    new_notebook,
    open_lab,
    output_area,
    requests_leaving,
    run_cell,
    show_whole,
    wait_drawn,
)

pytestmark = pytest.mark.browser

FIRST_RENDER_S = 300  # an explorer's first frame compiles its programs in the kernel


def bokeh_cell(n: int) -> str:
    # `output_notebook` in every such cell, as each tutorial's first cell does
    return f"""
from bokeh.io import output_notebook, show
from bokeh.plotting import figure
from bokeh.resources import INLINE
output_notebook(INLINE, hide_banner=True)
plot = figure(width=420, height=220, title="plain Bokeh plot {n}")
plot.line([0, 1, 2, 3, 4], [{n}, 3, 1, 4, 2], line_width=3)
show(plot)
"""


def explorer_cell(k: float) -> str:
    return f"""
import odelab as ol
ol.explore(ol.gallery.exponential_decay(k={k}), n_save=21, solver="tsit5",
           compute_gradient=False)
"""


ORDERS = {
    "bokeh-first": [bokeh_cell(1), explorer_cell(0.5), bokeh_cell(2), explorer_cell(0.8)],
    "explorer-first": [explorer_cell(0.5), bokeh_cell(1), explorer_cell(0.8), bokeh_cell(2)],
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_plain_bokeh_and_explorers_all_draw(page, jupyter_lab, order):
    page.set_viewport_size({"width": 1400, "height": 1300})  # room for a whole explorer
    open_lab(page, jupyter_lab)
    new_notebook(page)
    cells = ORDERS[order]
    for code in cells:
        outputs = run_cell(page, code, timeout_ms=FIRST_RENDER_S * 1000)
        assert errors_in(outputs) == []
    shots = ARTIFACTS / "mixed"
    shots.mkdir(parents=True, exist_ok=True)
    for k, code in enumerate(cells):
        kind = "explorer" if "explore(" in code else "plain Bokeh plot"
        area = wait_drawn(page, output_area(page, k), f"{order}: the {kind} of cell {k}",
                          FIRST_RENDER_S, shots / f"{order}-not-drawn-cell{k}.png")
        show_whole(area)
        area.screenshot(path=str(shots / f"{order}-cell{k}.png"))
    assert loading_errors(page) == []
    assert page.failures == []
    assert requests_leaving(page, jupyter_lab.host) == []
