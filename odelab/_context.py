"""Defaults that derivative and check calls lay over every `ol.solve` inside a user's function.

`ol.gradient(fun, p, method="backsolve", rtol=1e-8)` runs `fun` inside `solve_defaults(...)`, so
each `ol.solve` in `fun` that does not name its own method or tolerance uses these. The values
may be traced arrays (rtol/atol), which keeps tolerance changes from recompiling.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from typing import Any


@dataclasses.dataclass(frozen=True)
class SolveDefaults:
    method: Any = None
    solver: Any = None
    rtol: Any = None
    atol: Any = None
    # what the surrounding derivative call asks of the solves: ("reverse"|"forward", order)
    derivative: tuple[str, int] | None = None


_DEFAULTS: contextvars.ContextVar[SolveDefaults] = contextvars.ContextVar(
    "odelab_solve_defaults", default=SolveDefaults()
)


def current() -> SolveDefaults:
    """The defaults in force for solves started now."""
    return _DEFAULTS.get()


@contextlib.contextmanager
def solve_defaults(**given: Any) -> Iterator[SolveDefaults]:
    """Lay `given` (method, solver, rtol, atol, derivative) over the defaults in force.

    Values that are None leave the outer default as it is.
    """
    outer = _DEFAULTS.get()
    inner = dataclasses.replace(outer, **{k: v for k, v in given.items() if v is not None})
    token = _DEFAULTS.set(inner)
    try:
        yield inner
    finally:
        _DEFAULTS.reset(token)


def _current_trace() -> Any:
    # JAX's current trace; values made under an inner transform (vmap, scan) belong to it
    from jax._src import core

    return core.trace_ctx.trace


class StatusRecorder:
    """Collects the result codes of the solves run while it is active (traced or concrete).

    Only solves run at the recorder's own trace level are collected: a status computed inside
    an inner `jax.vmap` or `lax.scan` cannot leave it (a failure there shows up as NaN instead).
    """

    def __init__(self) -> None:
        self.entries: list[tuple[Any, Any]] = []  # (result code, time reached)
        self.trace = _current_trace()


_RECORDERS: contextvars.ContextVar[tuple[StatusRecorder, ...]] = contextvars.ContextVar(
    "odelab_status_recorders", default=()
)


@contextlib.contextmanager
def recording() -> Iterator[StatusRecorder]:
    """Record every solve's status while active, so a derivative call can report failures."""
    recorder = StatusRecorder()
    token = _RECORDERS.set(_RECORDERS.get() + (recorder,))
    try:
        yield recorder
    finally:
        _RECORDERS.reset(token)


def record(code: Any, t_reached: Any) -> None:
    """Note a traced solve's status with the innermost recorder (its trace owns the values)."""
    recorders = _RECORDERS.get()
    if recorders and recorders[-1].trace is _current_trace():
        recorders[-1].entries.append((code, t_reached))


# Callables called as listener(system, y0, params, t_span, solver, sol) after every concrete
# (untraced) `ol.solve`; the gradient check and the lab sidebar use them to see what ran.
SOLVE_LISTENERS: list = []


def notify_solve(*args: Any) -> None:
    for listener in list(SOLVE_LISTENERS):
        listener(*args)
