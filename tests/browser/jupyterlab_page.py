"""Helpers that drive JupyterLab through `window.jupyterapp` (exposed by expose_app_in_browser).

Commands and the notebook model are used instead of simulated typing: they do not depend on focus
or keyboard timing, which makes the tests steady on a loaded machine.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

APP_READY = "() => window.jupyterapp !== undefined && window.jupyterapp.shell !== undefined"


def open_lab(page, server) -> None:
    """Open JupyterLab in `page` with an empty workspace (nothing reopened from earlier tests)."""
    page.goto(server.lab_url(query="reset"))
    page.wait_for_function(APP_READY)
    page.evaluate("() => window.jupyterapp.started")
    page.wait_for_selector("#jp-main-dock-panel")
    # the splash screen fades out after start-up and swallows clicks until it is gone
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=120_000)


def new_notebook(page) -> str:
    """Create and open an untitled notebook with the python3 kernel; wait for the kernel."""
    path = page.evaluate(
        """async () => {
            const app = window.jupyterapp;
            const panel = await app.commands.execute(
                'notebook:create-new', {kernelName: 'python3'}
            );
            await panel.context.ready;
            await panel.sessionContext.ready;
            return panel.context.path;
        }"""
    )
    wait_for_idle_kernel(page)
    return path


def wait_for_idle_kernel(page, timeout_ms: int = 90_000) -> None:
    page.wait_for_function(
        """() => {
            const panel = window.jupyterapp.shell.currentWidget;
            const kernel = panel && panel.sessionContext && panel.sessionContext.session
                && panel.sessionContext.session.kernel;
            return kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
        }""",
        timeout=timeout_ms,
    )


def run_cell(page, code: str, timeout_ms: int = 120_000) -> list[dict]:
    """Run `code` in a new cell at the end of the current notebook (or in its one empty cell).

    Earlier cells and their outputs stay as they are. Returns the outputs of the new cell.
    """
    return page.evaluate(
        """async ([code, timeout]) => {
            const panel = window.jupyterapp.shell.currentWidget;
            const notebook = panel.content;
            const cells = notebook.model.sharedModel;
            const last = cells.cells.length - 1;
            const reuse = cells.cells.length === 1 && cells.cells[0].getSource() === '';
            const index = reuse ? 0 : last + 1;
            if (reuse) {
                cells.cells[0].setSource(code);
            } else {
                cells.insertCell(index, { cell_type: 'code', source: code });
            }
            notebook.activeCellIndex = index;
            const cell = notebook.widgets[index];
            // CodeCell.execute (a static of the cell's class) resolves when the reply arrives.
            const done = cell.constructor.execute(cell, panel.sessionContext);
            await Promise.race([
                done,
                new Promise((_, reject) =>
                    setTimeout(() => reject(new Error('cell timed out')), timeout)
                )
            ]);
            return cell.model.outputs.toJSON();
        }""",
        [code, timeout_ms],
    )


def errors_in(outputs: list[dict]) -> list[str]:
    return [
        f"{o.get('ename')}: {o.get('evalue')}" for o in outputs if o.get("output_type") == "error"
    ]


def open_sidebar(page) -> None:
    page.evaluate("() => window.jupyterapp.shell.activateById('odelab-sidebar')")
    page.wait_for_selector("#odelab-sidebar", state="visible")


def execute_command(page, command: str, args: dict | None = None):
    return page.evaluate(
        "async ([command, args]) => { await window.jupyterapp.commands.execute(command, args); }",
        [command, json.loads(json.dumps(args or {}))],
    )


def open_notebook(page, path: str, timeout_ms: int = 120_000) -> None:
    """Open the notebook at `path` (relative to the server's root) with the python3 kernel."""
    page.evaluate(
        """async (path) => {
            const app = window.jupyterapp;
            const panel = await app.commands.execute(
                'docmanager:open', {path, factory: 'Notebook', kernel: {name: 'python3'}}
            );
            await panel.context.ready;
            await panel.sessionContext.ready;
            app.shell.activateById(panel.id);
        }""",
        path,
    )
    wait_for_idle_kernel(page, timeout_ms)


def run_all_cells(page, timeout_ms: int) -> list[dict]:
    """Run All (the menu's command) on the current notebook; the cells as nbformat JSON.

    The command's promise resolves when the last cell has run or a cell failed.
    """
    return page.evaluate(
        """async (timeout) => {
            const app = window.jupyterapp;
            const panel = app.shell.currentWidget;
            await Promise.race([
                app.commands.execute('notebook:run-all-cells'),
                new Promise((_, reject) =>
                    setTimeout(() => reject(new Error('Run All timed out')), timeout))
            ]);
            return panel.content.model.toJSON().cells;
        }""",
        timeout_ms,
    )


def close_notebook(page) -> None:
    """Close the current notebook without saving, and stop its kernel."""
    page.evaluate(
        """async () => {
            const panel = window.jupyterapp.shell.currentWidget;
            panel.context.model.dirty = false;
            await panel.sessionContext.shutdown();
            panel.dispose();
        }"""
    )


# Evaluates a Python expression in the current notebook's kernel as a `user_expressions` entry of
# an execute request: the value comes back in the reply itself. (Printed output is routed by the
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


# Every ColumnDataSource of the page's Bokeh documents (those of Panel's BokehJS), as
# {column: values}: what the page draws.
PAGE_SOURCES = """() => {
    const docs = new Set((window.Bokeh.documents || []).concat(
        window.Bokeh.index.roots.map((view) => view.model.document)));
    const out = [];
    for (const doc of docs) {
        if (!doc) continue;
        for (const model of doc.all_models) {
            const data = model.data;
            if (!data || typeof data !== 'object' || data instanceof Map) continue;
            const columns = Object.entries(data);
            if (!columns.length || !columns.every(([, v]) => Array.isArray(v)
                                                          || ArrayBuffer.isView(v))) continue;
            out.push(Object.fromEntries(columns.map(([k, v]) => [k, Array.from(v)])));
        }
    }
    return out;
}"""


def page_sources(page) -> list[dict]:
    """The data of every ColumnDataSource the page holds (see PAGE_SOURCES)."""
    return page.evaluate(PAGE_SOURCES)


def kernel_eval(page, expression: str) -> str:
    """The repr of `expression` evaluated in the current notebook's kernel."""
    text = page.evaluate(KERNEL_EVAL, expression)
    assert not text.startswith("ERROR"), f"{expression}: {text}"
    return text


# How many pixels of a canvas are drawn: neither transparent nor white. Bokeh draws each plot on
# canvases inside shadow roots; Playwright's locators reach into them.
DRAWN_PIXELS = """(canvas) => {
    if (!canvas.width || !canvas.height) return 0;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let drawn = 0;
    for (let i = 0; i < data.length; i += 4) {
        const white = data[i] > 245 && data[i + 1] > 245 && data[i + 2] > 245;
        if (data[i + 3] > 0 && !white) drawn++;
    }
    return drawn;
}"""


def show_whole(area) -> None:
    """Scroll `area` (a locator in a notebook) so that as much of it as fits is on screen."""
    area.evaluate("(e) => e.scrollIntoView({block: 'center'})")
    area.page.wait_for_timeout(300)


def drawn_pixels(area) -> int:
    """The most drawn pixels of any visible canvas in `area` (a locator): 0 if nothing is drawn."""
    counts = [canvas.evaluate(DRAWN_PIXELS) for canvas in area.locator("canvas").all()
              if canvas.is_visible()]
    return max(counts, default=0)


def console_line(msg) -> str:
    """A console message as one line; a failed load also names what failed (Chromium's text does
    not, its location does)."""
    line = f"{msg.type}: {msg.text}"
    where = (msg.location or {}).get("url", "")
    if msg.text.startswith("Failed to load resource") and where:
        line += f" ({where})"
    return line


def new_page(browser, width: int = 1400, height: int = 900):
    """A page in a fresh browser context that records its requests and console."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.console_messages, page.requests, page.failures = [], [], []
    page.on("console", lambda msg: page.console_messages.append(console_line(msg)))
    page.on("pageerror", lambda err: page.console_messages.append(f"pageerror: {err}"))
    page.on("request", lambda req: page.requests.append(req.url))
    page.on("requestfailed",
            lambda req: page.failures.append(f"{req.url}: {req.failure}"))
    page.on("response", lambda res: res.status >= 400 and page.failures.append(
        f"{res.url}: HTTP {res.status} ({res.headers.get('content-type', '')})"))
    return page


def save_page_artifacts(page, name: str) -> None:
    """A screenshot, the console and the requests of `page` in test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    name = name.replace("/", "_").replace("[", "_").replace("]", "")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    (ARTIFACTS / f"{name}.console.txt").write_text("\n".join(page.console_messages))
    (ARTIFACTS / f"{name}.requests.txt").write_text(
        "\n".join(page.requests + ["", "failed:"] + page.failures))


def shut_down_kernels(page) -> None:
    """Stop every kernel of the server (the page's notebooks are done): memory for the next."""
    try:
        page.evaluate("async () => { await window.jupyterapp.serviceManager.sessions"
                      ".shutdownAll(); }")
    except Exception:  # the page never reached JupyterLab: nothing was started from it
        pass


# What a page's console says when Panel or Bokeh failed to load or to apply an update.
LOADING_ERRORS = re.compile(
    r"Unable to run (Panel|BokehJS) code|library is missing|BokehJS failed to load|"
    r"failed to load|isn't known|Refused to|Failed to load resource|ERR_|Bokeh: ERROR|"
    r"Panel: (ERROR|WARNING)|Could not find comm manager|Uncaught|pageerror", re.IGNORECASE)
DRAWN = 500  # pixels a drawn plot has at least (axes, ticks, lines)


def loading_errors(page, since: int = 0) -> list[str]:
    """Console messages of `page` (from index `since`) that report a loading or update error."""
    return [m for m in page.console_messages[since:] if LOADING_ERRORS.search(m)]


def requests_leaving(page, host: str, since: int = 0) -> list[str]:
    """The requests of `page` (from index `since`) that do not go to `host` (data:, blob: pass)."""
    outside = []
    for url in page.requests[since:]:
        parts = urlsplit(url)
        if parts.scheme not in ("data", "blob") and parts.netloc != host:
            outside.append(url)
    return outside


def output_area(page, k: int):
    """The output area of cell k of the notebook on show."""
    panel = page.locator(".jp-NotebookPanel:visible")
    return panel.locator(".jp-Notebook .jp-Cell").nth(k).locator(".jp-OutputArea")


def wait_drawn(page, area, what: str, timeout_s: float = 120.0, shot: Path | None = None):
    """Wait until a canvas in `area` is drawn (scrolling it into view); `area` then."""
    deadline = time.monotonic() + timeout_s
    while True:
        area.scroll_into_view_if_needed()
        if drawn_pixels(area) >= DRAWN:
            return area
        if time.monotonic() > deadline:
            if shot is not None:
                area.screenshot(path=str(shot))
            raise AssertionError(f"{what} shows no drawn plot after {timeout_s:.0f} s")
        page.wait_for_timeout(500)


def wait_until(page, condition, timeout_s: float, every_ms: int = 500) -> None:
    """Poll `condition()` (Python, may read the page) until it is true; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout_s:.0f} s: {condition}")
        page.wait_for_timeout(every_ms)
