"""Defaults that derivative and check calls lay over every `ol.solve` inside a user's function.

`ol.gradient(fun, p, method="backsolve", rtol=1e-8)` runs `fun` inside `solve_defaults(...)`, so
each `ol.solve` in `fun` that does not name its own method or tolerance uses these. The values
may be traced arrays (rtol/atol), which keeps tolerance changes from recompiling.

Beneath them lie the session defaults (`set_session_defaults`): the solver, method and
tolerances a person chose for the whole session (JupyterLab's odelab settings), checked with the
same rules as the arguments of `ol.solve` before they are kept.

`recording()` collects the result codes of the solves traced inside a derivative program, so the
derivative call can report a failed solve instead of returning a meaningless number;
`tolerances_used()` collects the relative tolerance each of those solves actually ran at (a
solve may pin its own), which is the noise finite differences of the objective must step over.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from typing import Any

from .._errors import InputError
from .._inputs import check_memory_budget, check_tolerance
from .gradient_method import method_object
from .solvers import solver_spec

DEFAULT_SAVE_POINTS = 201
DEFAULT_MAX_STEPS = 16384


@dataclasses.dataclass(frozen=True)
class SolveDefaults:
    method: Any = None
    solver: Any = None
    rtol: Any = None
    atol: Any = None
    # what the surrounding derivative call asks of the solves: ("reverse"|"forward", order)
    derivative: tuple[str, int] | None = None
    # the step budget of solves that do not name theirs (static: part of the compiled program)
    max_steps: int | None = None
    # the memory budget (bytes) "auto" plans the solves within (None: ODELAB_MEMORY_BUDGET, else
    # half the device's free memory)
    memory_budget: float | None = None


_DEFAULTS: contextvars.ContextVar[SolveDefaults] = contextvars.ContextVar(
    "odelab_solve_defaults", default=SolveDefaults()
)


_SESSION = SolveDefaults()


def current() -> SolveDefaults:
    """The defaults in force for solves started now: the enclosing calls' over the session's."""
    inner = _DEFAULTS.get()
    if _SESSION == _EMPTY:
        return inner
    return dataclasses.replace(
        _SESSION, **{f.name: v for f in dataclasses.fields(inner)
                     if (v := getattr(inner, f.name)) is not None})


_EMPTY = SolveDefaults()


def set_session_defaults(solver: Any = None, method: Any = None, rtol: Any = None,
                         atol: Any = None, memory_budget: Any = None) -> SolveDefaults:
    """Set the session's solver, method, tolerances and memory budget (None: odelab's own
    default; memory_budget as in `ol.gradient(..., memory_budget="512MB")`).

    Checked like the arguments of `ol.solve`: an unknown solver or method name, or a tolerance
    that is not a sensible positive number, raises InputError and changes nothing.
    """
    if solver is not None and solver != "auto":
        spec = solver_spec(solver)
        if not spec.adaptive:  # a session default has no dt: every later solve would fail
            raise InputError(
                f"`solver={solver!r}` has no error estimate, so it needs a fixed step dt=... on "
                "each solve; it cannot be the session's default solver. Choose an adaptive "
                "solver such as 'tsit5' (or 'auto'), and pass solver=..., dt=... to the solves "
                "that should take fixed steps.")
        solver = spec.name
    if method is not None:
        method = method_object(method)
        method = method if method == "auto" else method.name
    if rtol is not None:
        rtol = check_tolerance("rtol", rtol)
    if atol is not None:
        atol = check_tolerance("atol", atol)
    memory_budget = check_memory_budget(memory_budget)
    global _SESSION
    _SESSION = SolveDefaults(solver=solver, method=method, rtol=rtol, atol=atol,
                             memory_budget=memory_budget)
    return _SESSION


def session_defaults() -> dict[str, Any]:
    """The session defaults that are set, as a dict (empty: odelab's own defaults)."""
    return {f.name: getattr(_SESSION, f.name) for f in dataclasses.fields(_SESSION)
            if getattr(_SESSION, f.name) is not None}


@contextlib.contextmanager
def solve_defaults(**given: Any) -> Iterator[SolveDefaults]:
    """Lay `given` (method, solver, rtol, atol, derivative, max_steps) over the defaults in force.

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


def record(code: Any, t_reached: Any, rtol: Any = None) -> None:
    """Note a traced solve's status with the innermost recorder (its trace owns the values),
    and the tolerance it ran at with every `tolerances_used()` collector of the same trace."""
    recorders = _RECORDERS.get()
    trace = _current_trace()
    if recorders and recorders[-1].trace is trace:
        recorders[-1].entries.append((code, t_reached))
    if rtol is not None:
        for collector in _TOLERANCES.get():
            if collector.trace is trace:
                collector.entries.append(rtol)


_TOLERANCES: contextvars.ContextVar[tuple[StatusRecorder, ...]] = contextvars.ContextVar(
    "odelab_tolerance_collectors", default=()
)


@contextlib.contextmanager
def tolerances_used() -> Iterator[list[Any]]:
    """Collect the rtol of every solve traced while active, at this trace level (a solve that
    pins `rtol=` inside the user's function reports its own, not the derivative call's)."""
    collector = StatusRecorder()
    token = _TOLERANCES.set(_TOLERANCES.get() + (collector,))
    try:
        yield collector.entries
    finally:
        _TOLERANCES.reset(token)
