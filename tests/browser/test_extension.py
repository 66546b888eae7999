"""The odelab JupyterLab extension in a real browser: sidebar, explorer, status bar, launcher."""

import json
import re
from pathlib import Path

import pytest
from jupyterlab_page import (
    errors_in,
    execute_command,
    new_notebook,
    open_lab,
    open_sidebar,
    run_cell,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
# Building the explorer solves and compiles in the kernel; on a busy 2-core machine that is slow.
EXPLORER_TIMEOUT_MS = 240_000

# `_lab.activate()` and `_registry.track` are idempotent: they are what `import odelab` and
# `ol.System(...)` do once the library calls them, and keep this test independent of that wiring.
SYSTEM_CELL = """
import jax.numpy as jnp
import odelab as ol
from odelab import _lab, _registry

_lab.activate()
decay = ol.System(lambda t, y, p: -p["k"] * y, states=("x",), params={"k": 0.5},
                  y0=[1.0], t_span=(0.0, 2.0), name="decay")
_registry.track(decay, "system", "decay", states=["x"], params={"k": 0.5})
"""


def test_sidebar_lists_a_new_system_and_opens_its_explorer(page, jupyter_lab):
    open_lab(page, jupyter_lab)
    new_notebook(page)
    open_sidebar(page)
    sidebar = page.locator("#odelab-sidebar")
    assert "Run `import odelab as ol`" in sidebar.inner_text()

    outputs = run_cell(page, SYSTEM_CELL)
    assert errors_in(outputs) == []

    item = sidebar.locator(".jp-odelab-item", has_text="decay")
    item.wait_for()
    assert item.locator(".jp-odelab-item-kind").inner_text() == "system"
    assert "states x" in item.inner_text()

    # A registry update in the kernel reaches the sidebar without any request.
    run_cell(page, '_registry.update(decay, last_solver="tsit5", last_method="checkpoint")')
    item.locator(".jp-odelab-item-solver", has_text="tsit5 · checkpoint").wait_for()

    status = page.locator(".jp-odelab-status")
    status.wait_for()
    assert re.fullmatch(r"odelab: cpu ×\d+ · float64", status.inner_text())

    item.click()
    tab = page.locator(".jp-odelab-display-tab")
    tab.wait_for()  # opens at once, saying the kernel is working
    title = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
    assert title.inner_text().strip() == "Explorer: decay"
    page.locator('.jp-odelab-display-tab[data-state="ready"]').wait_for(timeout=EXPLORER_TIMEOUT_MS)
    # Rendered by Panel/Bokeh (a Bokeh root), showing the system by name.
    tab.locator("[data-root-id]").first.wait_for(state="attached")
    tab.get_by_text("decay", exact=True).first.wait_for()
    # the README's picture of the sidebar and an explorer tab, retaken on every run
    tab.get_by_text("Trajectory", exact=True).first.wait_for()
    page.wait_for_timeout(1000)  # let the plot draw
    (REPO / "docs" / "images").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(REPO / "docs" / "images" / "jupyterlab-sidebar.png"))


def odelab_launcher_cards(page):
    """The cards of the odelab section of a freshly opened launcher."""
    execute_command(page, "launcher:create")
    section = page.locator(".jp-Launcher-section:visible", has_text="odelab")
    section.wait_for()
    return section.locator(".jp-LauncherCard")


def wait_for_open_document(page, path_prefix: str) -> str:
    return page.evaluate(
        """async (prefix) => {
            const shell = window.jupyterapp.shell;
            for (let i = 0; i < 600; i++) {
                const path = shell.currentWidget?.context?.path ?? '';
                if (path.startsWith(prefix)) return path;
                await new Promise(resolve => setTimeout(resolve, 100));
            }
            throw new Error(`no document ${prefix}* opened`);
        }""",
        path_prefix,
    )


def test_launcher_creates_a_system_notebook_and_lists_tutorials(page, jupyter_lab):
    open_lab(page, jupyter_lab)
    tutorials = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    cards = odelab_launcher_cards(page)
    try:  # "New System" + one card per tutorial; the tutorial list loads after the launcher
        cards.nth(len(tutorials)).wait_for(timeout=20_000)
    except PlaywrightTimeoutError:
        pass
    assert cards.count() == 1 + len(tutorials), (
        f"the launcher shows {cards.count() - 1} tutorials, notebooks/ has {len(tutorials)}: "
        "rebuild the extension (`jlpm build` in extension/, or `pip install -e .`)"
    )

    cards.filter(has_text="New System").click()
    path = wait_for_open_document(page, "odelab-system")
    created = json.loads((jupyter_lab.root / path).read_text())
    sources = ["".join(cell["source"]) for cell in created["cells"]]
    assert any("ol.System(" in source for source in sources)

    # Tutorials follow in file order; opening one copies it into the working folder.
    if tutorials:
        odelab_launcher_cards(page).nth(1).click()
        path = wait_for_open_document(page, tutorials[0].removesuffix(".ipynb"))
        assert path == tutorials[0]
        copied = json.loads((jupyter_lab.root / path).read_text())
        shipped = json.loads((REPO / "notebooks" / tutorials[0]).read_text())
        assert [c["source"] for c in copied["cells"]] == [c["source"] for c in shipped["cells"]]
        assert all(c.get("outputs", []) == [] for c in copied["cells"])
