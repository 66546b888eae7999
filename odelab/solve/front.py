"""`solve`: the one front for every solve, ODE or delay equation.

It resolves the arguments once (`settings`), hands them to the integrator of the system's kind
(`ode` or `delay`), runs the compiled program, and reports: a failed solve gets a plain-words
explanation, traced solves record their status for the derivative call around them, and every
concrete solve is announced as an event (the gradient check and the JupyterLab sidebar listen).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from .. import _events
from .._compilations import SOLVE_TRACES
from .._errors import InputError, OdelabError, SolveError
from .._inputs import is_concrete
from . import defaults, delay, failures, ode, settings
from .solution import Solution

_SEEN_CONFIGS: set = set()
_SEEN_LOCK = threading.Lock()


def _integrator(system: Any) -> Any:
    """The integrator module for `system`'s kind (it says its kind as `system.kind`)."""
    kind = getattr(system, "kind", None)
    if kind == ode.KIND and hasattr(system, "check_y0"):
        return ode
    if kind == delay.KIND and hasattr(system, "ode_view"):
        return delay
    raise InputError(
        f"`system` must be an odelab System (ol.System(...), @ol.system, "
        f"ol.System.from_equations, ol.gallery.*) or an ol.DelaySystem; got "
        f"{type(system).__name__}."
    )


def solve(
    system: Any,
    y0: Any = None,
    params: Any = None,
    t_span: tuple[float, float] | None = None,
    saveat: Any = None,
    solver: str | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int | None = None,
    method: Any = None,
    dt: float | None = None,
    throw: bool = True,
    memory_budget: Any = None,
) -> Solution:
    """Integrate `system` (a System or a DelaySystem) from `t_span[0]` to `t_span[1]`.

    Anything left as None comes from the enclosing derivative or check call (`ol.gradient(...,
    method=..., rtol=...)`), else from the session (JupyterLab's odelab settings), else from the
    system (y0, params, t_span), else from odelab's defaults: solver "auto" (tsit5 unless the
    problem is stiff), rtol 1e-6, atol 1e-8, method "auto", 201 save points.

    saveat: a number of evenly spaced points, an array of times, or "dense" (keeps the
      interpolant: `sol.evaluate(t)`).
    dt: a fixed step size (no error control); without it steps are adaptive (PID controller).
    max_steps: the step budget (for a DelaySystem: per interval between breakpoints).
    throw: raise `SolveError` when the solve fails (outside transforms); with False, check
      `sol.ok` and `sol.message` instead.
    memory_budget: bytes (or a size, "512MB") that method="auto" plans a gradient through this
      solve within (default: the enclosing call's, else ODELAB_MEMORY_BUDGET, else half the
      device's free memory); `sol.method_reason` says when it planned with less memory.

        >>> sol = ol.solve(ol.gallery.lorenz(), saveat=1000, rtol=1e-8)
        >>> sol["x"], sol.stats
    """
    integrator = _integrator(system)
    if integrator is delay:
        y0 = system.initial_state(y0)
    s = settings.resolve(
        system, kind=integrator.KIND, y0=y0, params=params, t_span=t_span, saveat=saveat,
        solver=solver, rtol=rtol, atol=atol, max_steps=max_steps, method=method, dt=dt,
        default_max_steps=(delay.DEFAULT_INTERVAL_STEPS if integrator is delay
                           else settings.DEFAULT_MAX_STEPS),
        choose_solver=delay.choose_solver if integrator is delay else None,
        memory_budget=memory_budget,
    )
    config, inputs = integrator.prepare(system, s)
    if not is_concrete(inputs):  # inside a transform: the derivative call reports failures
        failures.check_transforms(s.method, failures.ad_chain(inputs), integrator.KIND,
                                  s.context.derivative)
        sol = _run(integrator, config, inputs)
        defaults.record(sol.result, sol.t_reached, s.rtol)
        return sol

    with _SEEN_LOCK:
        new_program = config not in _SEEN_CONFIGS
    if new_program:
        _events.emit(_events.COMPILING, active=True, what=f"a {s.spec.name} solve of "
                                                          f"{system.name!r}")
    start = time.perf_counter()
    before = SOLVE_TRACES.traces
    try:
        sol = _run(integrator, config, inputs)
        ok = sol.ok  # reads the status on the host, so the solve has finished
    finally:
        if new_program:
            _events.emit(_events.COMPILING, active=False, what="")
    if new_program:
        with _SEEN_LOCK:
            _SEEN_CONFIGS.add(config)
    elapsed = time.perf_counter() - start
    compiled = SOLVE_TRACES.traces > before
    if compiled:
        SOLVE_TRACES.compile_seconds += elapsed
    if not ok:
        t_span_used = (float(s.t0), float(s.t1))
        if integrator is delay:
            hint = delay.explain(system, config, sol, s.params, s.rtol, t_span_used)
        else:
            hint = failures.explain(system, sol, s.params, s.rtol, t_span_used)
        sol = dataclasses.replace(sol, failure_hint=hint)
    if _events.has_listeners(_events.SOLVE):
        _events.emit(_events.SOLVE, system=system, y0=s.y0, params=s.params,
                     t_span=(float(s.t0), float(s.t1)), solver=s.spec.name,
                     method=s.method.name, solution=sol, seconds=elapsed, compiled=compiled)
    if not ok and throw:
        raise SolveError(sol.failure_hint)
    return sol


def _run(integrator: Any, config: Any, inputs: dict[str, Any]) -> Solution:
    """Run the program; an error raised while tracing it becomes an OdelabError saying where.

    The solution says why its solver was chosen this time: programs are shared between solves
    that differ only in that reason, so a reused program would carry its first caller's.
    """
    try:
        sol = integrator.integrate(config, inputs)
    except OdelabError:
        raise
    except Exception as err:
        if isinstance(err, (KeyboardInterrupt, MemoryError)):
            raise
        first = (str(err).strip().splitlines() or [""])[0]
        raise OdelabError(
            f"Solving {config.system_name!r} with solver={config.solver!r} and "
            f"method={config.method.name!r} failed: {type(err).__name__}: {first}"
        ) from err
    method_reason = getattr(config, "method_reason", "")
    if isinstance(sol, Solution) and (sol.solver_reason != config.solver_reason
                                      or sol.method_reason != method_reason):
        sol = dataclasses.replace(sol, solver_reason=config.solver_reason,
                                  method_reason=method_reason)
    return sol
