"""odelab's interactive views (Panel + Bokeh): `explore` and the pieces it is built from.

    >>> import odelab as ol
    >>> ol.explore(ol.gallery.lotka_volterra())      # in JupyterLab: shows the explorer

Panel's JavaScript is inlined when this module is imported inside a notebook kernel, so the
explorer renders offline (nothing is fetched from a CDN), also in pages that show plain Bokeh
plots (see `odelab.ui.notebook`).
"""

from __future__ import annotations

from typing import Any

from .. import _events
from ..system import Objective as Objective
from ..system import as_objective
from .explorer import Explorer as Explorer
from .notebook import load_extension as load_extension


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


if _in_notebook():
    load_extension()


def explore(target: Any, *, loss: Any = None, data: Any = None, **settings: Any) -> Explorer:
    """The interactive explorer of a System or an `Objective`.

    target: a System (ol.gallery.*, ol.System(...)) or ol.Objective(system, loss, data).
    loss: for a System, `loss(sol, params) -> scalar` differentiated by the gradient views;
      default least squares against `data` (or `system.data`), else the sum of squares of the
      final state.
    settings: initial values of the explorer's parameters, e.g. solver="tsit5",
      method="checkpoint", rtol=1e-8, n_save=500, background=True.

    Display the result in JupyterLab, wrap it with `pn.ipywidget(explorer)` elsewhere, or serve
    it with `odelab serve MODULE:OBJECT`. Every control is also a parameter:
    ``explorer.set_value("alpha", 2.0)``, ``explorer.method = "backsolve"``.
    """
    explorer = Explorer(as_objective(target, loss=loss, data=data), **settings)
    s = explorer.settings()  # the loss at the explorer's start, for the sidebar's gradient check
    _events.emit(_events.OBJECTIVE, fun=explorer.engine.closed_loss(s),
                 params=explorer.engine.params(s), source="explore",
                 name=f"{explorer.objective.system.name}: {explorer.objective.loss_name}")
    return explorer


__all__ = ["Explorer", "Objective", "explore", "load_extension"]
