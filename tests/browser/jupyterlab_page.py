"""Helpers that drive JupyterLab through `window.jupyterapp` (exposed by expose_app_in_browser).

Commands and the notebook model are used instead of simulated typing: they do not depend on focus
or keyboard timing, which makes the tests steady on a loaded machine.
"""

from __future__ import annotations

import json

APP_READY = "() => window.jupyterapp !== undefined && window.jupyterapp.shell !== undefined"


def open_lab(page, server) -> None:
    page.goto(server.lab_url())
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
