"""What the explorer's menus offer, and small helpers its views share (no widgets here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import odelab

from .._inputs import memory_budget, size_text
from ..methods import methods
from ..solve import SOLVERS, method_names
from ..solve.memory import MemoryProblem, planned_text

TOLERANCES = [10.0**-k for k in range(2, 15)]
VIEW_REQUESTS = {"Gradient": "gradient", "Gradient field": "gradient", "Hessian": "hessian"}
_REQUEST_WORDS = {"gradient": "gradients", "hessian": "Hessians"}


def solver_groups() -> dict[str, list[str]]:
    """Solver names grouped for the solver menu: automatic, explicit, stiff."""
    return {
        "automatic": ["auto"],
        "explicit (non-stiff)": [n for n, s in SOLVERS.items() if not s.stiff and s.adaptive],
        "implicit (stiff)": [n for n, s in SOLVERS.items() if s.stiff and s.adaptive],
    }


def method_reason(name: str, request: str) -> str:
    """Why gradient method `name` cannot serve `request`, or "" when it can (capability table)."""
    if name == "auto":
        return ""
    caps = methods()[name]
    if caps.supports(request):
        return ""
    if request in ("hvp", "hessian"):
        return f"no {_REQUEST_WORDS.get(request, request)}: it has no second-order route"
    return f"no {_REQUEST_WORDS.get(request, request)}: it goes neither forward nor reverse"


def explorer_methods(system: Any) -> list[str]:
    """The gradient methods the explorer offers for `system`: "auto" and every registered method
    that applies to its kind (no delay-equation methods for an ordinary System)."""
    return ["auto", *method_names(getattr(system, "kind", "ode"))]


def method_options(request: str | None, names: list[str] | None = None) -> dict[str, str]:
    """Menu labels → method names; methods that cannot serve `request` say why in the label.

    names: the methods to offer (default every registered one), e.g. `method_names(system)`.
    """
    options = {"auto (odelab picks)": "auto"}
    for row in methods():
        if names is not None and row.name not in names:
            continue
        label = row.name if row.capabilities.exact else f"{row.name} (approximate)"
        reason = method_reason(row.name, request) if request else ""
        options[f"{label} ✗ {reason}" if reason else label] = row.name
    return options


def planned_memory_text(system: Any, names: list[str], n_save: int | None = None) -> str:
    """The planned memory of a gradient of `system`'s solve with each method in `names`, in a
    line for the method menu ("auto" shows the budget it plans within)."""
    problem = MemoryProblem.of(system, n_save=n_save)
    parts = [f"{n} {planned_text(n, problem)}" for n in names if n != "auto"]
    return (f"Planned memory of a gradient (max_steps {problem.max_steps}): "
            + " · ".join(parts) + f". Auto plans within {size_text(memory_budget())}.")


def optional(name: str) -> Callable | None:
    """`odelab.<name>` if the module providing it is installed, else None."""
    try:
        return getattr(odelab, name)
    except (AttributeError, ImportError):
        return None


