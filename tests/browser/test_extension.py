"""The odelab JupyterLab extension in a real browser: sidebar, explorer, status bar, launcher."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from jupyterlab_page import (
    ARTIFACTS,
    errors_in,
    execute_command,
    new_notebook,
    open_lab,
    open_sidebar,
    run_cell,
    wait_until,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
# Building the explorer solves and compiles in the kernel; on a busy 2-core machine that is slow.
EXPLORER_TIMEOUT_MS = 240_000

# Importing odelab in a kernel connects the sidebar; defining a System lists it there.
SYSTEM_CELL = """
import jax.numpy as jnp
import odelab as ol

decay = ol.System(lambda t, y, p: -p["k"] * y, states=("x",), params={"k": 0.5},
                  y0=[1.0], t_span=(0.0, 2.0), name="decay")
"""


def test_sidebar_lists_a_new_system_and_opens_its_explorer(page, jupyter_lab):
    open_lab(page, jupyter_lab)
    new_notebook(page)
    open_sidebar(page)
    sidebar = page.locator("#odelab-sidebar")
    assert "Run `import odelab as ol`" in sidebar.inner_text()

    outputs = run_cell(page, SYSTEM_CELL)
    assert errors_in(outputs) == []

    item = sidebar.locator(".jp-odelab-item[data-kind='system']", has_text="decay")
    item.wait_for()
    assert item.locator(".jp-odelab-item-kind").inner_text() == "system"
    assert "states x" in item.inner_text()

    # A solve in the kernel reaches the sidebar without any request.
    run_cell(page, 'ol.solve(decay, solver="tsit5", method="checkpoint");')
    item.locator(".jp-odelab-item-solver", has_text="tsit5 · checkpoint").wait_for()
    # ... and is listed as a run of that system
    run = sidebar.locator(".jp-odelab-item[data-kind='run']", has_text="decay")
    run.wait_for()
    assert run.locator(".jp-odelab-item-kind").inner_text() == "run"

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
    tab.get_by_text("Trajectory", exact=True).first.wait_for()
    # (the README's picture of the sidebar comes from the quickstart's run in the browser)


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


# A loss with a closed-form gradient: x(1) = e^{-k}, so L(k) = x(1)^2 = e^{-2k} and
# dL/dk = -2 e^{-2k}. A short check (one method, one tolerance) keeps the browser test quick.
OBJECTIVE_CELL = """
import numpy as np

decay = ol.System(lambda t, y, p: -p["k"] * y, states=("x",), params={"k": 0.5},
                  y0=[1.0], t_span=(0.0, 1.0), name="decay")

def decay_loss(p):
    return ol.solve(decay, params=p, saveat=5).ys[-1, 0] ** 2

report = ol.check_gradient(decay_loss, {"k": 0.5}, methods=["checkpoint"], rtols=(1e-6,),
                           diagnose=False)
print(report.overall, float(report.reference[0]) / (-2 * np.exp(-1.0)) - 1,
      float(decay_loss({"k": 0.5})) / np.exp(-1.0) - 1)  # a plain solve: listed as a run
"""

# A short fit of the same loss, slowed a little per step so the sidebar can be seen moving.
FIT_CELL = """
import time
import optax
result = ol.fit(decay_loss, {"k": 0.5}, steps=40, optimizer=optax.adam(0.1), progress=False,
                callback=lambda event: time.sleep(0.1))
print(result.steps, result.losses[-1], result.best_loss)
"""

# Starts running `code` in a new cell without waiting for it: the page keeps updating meanwhile.
START_CELL = """(code) => {
    const panel = window.jupyterapp.shell.currentWidget;
    const notebook = panel.content;
    const cells = notebook.model.sharedModel;
    const index = cells.cells.length;
    cells.insertCell(index, { cell_type: 'code', source: code });
    notebook.activeCellIndex = index;
    const cell = notebook.widgets[index];
    window.__odelabCell = cell.constructor.execute(cell, panel.sessionContext)
        .then(() => cell.model.outputs.toJSON());
}"""


# Records the states the gradient report tab goes through ("working", then "ready").
WATCH_REPORT_TAB = """() => {
    const tab = document.querySelector(".jp-odelab-display-tab[data-action='check_gradient']");
    window.__odelabStates = [];
    new MutationObserver(() => window.__odelabStates.push(tab.dataset.state))
        .observe(tab, {attributes: true, attributeFilter: ['data-state']});
}"""


def stdout_of(outputs: list[dict]) -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


def run_palette_command(page, label: str) -> None:
    """Run a command as a person does: open the command palette, type its label, press Enter."""
    execute_command(page, "apputils:activate-command-palette")
    search = page.locator(".lm-CommandPalette-input")
    search.wait_for()
    search.fill(label)
    page.locator(".lm-CommandPalette-item.lm-mod-active", has_text=label).wait_for()
    search.press("Enter")


def test_sidebar_shows_objective_verdict_and_fit_progress_and_the_palette_checks(
        page, jupyter_lab):
    open_lab(page, jupyter_lab)
    new_notebook(page)
    open_sidebar(page)
    sidebar = page.locator("#odelab-sidebar")
    assert errors_in(run_cell(page, "import odelab as ol")) == []
    page.locator(".jp-odelab-status").wait_for()

    # With no objective yet, the palette's check says what to do.
    run_palette_command(page, "Check odelab Gradient")
    page.get_by_text("no objective to check in this notebook yet").first.wait_for()
    page.wait_for_timeout(1000)  # the toast slides in
    page.screenshot(path=str(ARTIFACTS / "palette_check_without_objective.png"))

    outputs = run_cell(page, OBJECTIVE_CELL, timeout_ms=EXPLORER_TIMEOUT_MS)
    assert errors_in(outputs) == []
    verdict, gradient_error, loss_error = stdout_of(outputs).split()
    assert verdict == "accurate" and abs(float(gradient_error)) < 1e-6  # the closed forms
    assert abs(float(loss_error)) < 1e-5

    objective = sidebar.locator(".jp-odelab-item[data-kind='objective']", has_text="decay_loss")
    objective.wait_for()
    assert "from check_gradient · 1 parameter" in objective.inner_text()
    shown = objective.locator(".jp-odelab-item-verdict")
    assert shown.inner_text() == "gradient accurate"
    assert shown.get_attribute("data-verdict") == "accurate"
    run = sidebar.locator(".jp-odelab-item[data-kind='run']", has_text="decay").first
    assert re.search(r"\d+ steps · .+ · ok", run.locator(".jp-odelab-item-status").inner_text())
    objective.click()  # selects it: the palette's check runs on it
    sidebar.locator(".jp-odelab-item.jp-mod-selected[data-kind='objective']").wait_for()
    page.screenshot(path=str(ARTIFACTS / "sidebar_objective_verdict.png"))

    run_palette_command(page, "Check odelab Gradient")
    tab = page.locator(".jp-odelab-display-tab[data-action='check_gradient']")
    tab.wait_for()
    title = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
    assert title.inner_text().strip() == "Gradient check: decay_loss"
    page.locator(".jp-odelab-display-tab[data-action='check_gradient'][data-state='ready']"
                 ).wait_for(timeout=EXPLORER_TIMEOUT_MS)
    report = tab.locator(".jp-OutputArea-output").last
    report.get_by_text("Gradient check of decay_loss").wait_for()
    assert "checkpoint" in report.inner_text()  # the same check again: its one method
    page.screenshot(path=str(ARTIFACTS / "gradient_report_tab.png"))

    # A fit appears at once and moves: progress bar, steps, loss and best loss.
    page.evaluate("""() => {
        const shell = window.jupyterapp.shell;
        shell.activateById(Array.from(shell.widgets('main')).find(w => w.sessionContext).id);
    }""")
    page.evaluate(START_CELL, FIT_CELL)
    # The first step compiles the training step: the status bar says so meanwhile.
    page.wait_for_function(
        "() => document.querySelector('.jp-odelab-status').textContent.includes('compiling…')",
        polling="raf", timeout=EXPLORER_TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "status_bar_compiling.png"))
    fit = sidebar.locator(".jp-odelab-item[data-kind='fit']", has_text="fit: decay_loss")
    fit.wait_for(timeout=EXPLORER_TIMEOUT_MS)
    bar = fit.locator("progress.jp-odelab-item-progress")
    seen = []

    def moving():
        value = float(bar.get_attribute("value") or 0)
        seen.append(value)
        return 0 < value < 1

    wait_until(page, moving, timeout_s=EXPLORER_TIMEOUT_MS / 1000, every_ms=100)
    assert re.fullmatch(r"\d+/40 steps", fit.locator(".jp-odelab-item-fit-progress").inner_text())
    page.screenshot(path=str(ARTIFACTS / "sidebar_fit_running.png"))
    outputs = page.evaluate("async () => await window.__odelabCell")
    assert errors_in(outputs) == []
    steps, last, best = stdout_of(outputs).split()
    assert "from check_gradient, fit" in objective.inner_text()  # every use is listed
    assert steps == "40"
    fit.locator(".jp-odelab-item-fit-progress", has_text="40/40 steps · done").wait_for()
    assert float(bar.get_attribute("value")) == 1
    losses = fit.locator(".jp-odelab-item-loss").inner_text()
    loss_text, best_text = re.fullmatch(r"loss (\S+) · best (\S+) \(step \d+\)", losses).groups()
    assert float(loss_text) == pytest.approx(float(last), rel=5e-3)
    assert float(best_text) == pytest.approx(float(best), rel=5e-3)
    assert float(best) < 0.5 * np.exp(-1.0)  # the fit went down from e^{-1}
    page.screenshot(path=str(ARTIFACTS / "sidebar_fit_done.png"))

    # The fit's own button checks the loss it fits again, in that objective's report tab.
    page.evaluate(WATCH_REPORT_TAB)
    fit.locator(".jp-odelab-item-check").click()
    page.wait_for_function("() => window.__odelabStates.join(' ').includes('working ready')",
                           timeout=EXPLORER_TIMEOUT_MS)
    assert title.inner_text().strip() == "Gradient check: decay_loss"
    assert "accurate" in tab.locator(".jp-OutputArea-output").last.inner_text()
    sidebar.locator(".jp-odelab-item.jp-mod-selected[data-kind='fit']").wait_for()
    # every message of the kernel passed the extension's checks (protocol.ts)
    assert [m for m in page.console_messages if "odelab: ignored" in m] == []
