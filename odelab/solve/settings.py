"""Resolving a solve's arguments once: explicit values, else the enclosing call's, else odelab's.

`resolve` turns what the user passed to `ol.solve` (many of them None) into checked `Settings`:
the values that are compiled into the program (solver, method, save points, fixed or adaptive
steps, max_steps) and those passed as traced inputs (y0, parameters, t_span, rtol, atol, dt,
save times). ODE and delay solves share it; each integrator then builds its program from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import InputError, MethodNotApplicableError
from .._inputs import (
    as_params,
    check_count,
    check_finite,
    check_memory_budget,
    check_params_finite,
    check_t_span,
    check_tolerance,
    float_array,
    float_dtype,
    is_concrete,
    scalar,
)
from .._inputs import memory_budget as budget_in_force
from . import auto, defaults
from .defaults import DEFAULT_MAX_STEPS, DEFAULT_SAVE_POINTS  # noqa: F401  (re-exported)
from .gradient_method import GradientMethod, method_names, method_object
from .memory import MemoryProblem, count_floats, solver_stages
from .ode import check_saved_points_memory
from .solvers import SolverSpec, solver_spec

DEFAULT_RTOL = 1e-6
DEFAULT_ATOL = 1e-8


@dataclasses.dataclass
class Settings:
    """A solve's arguments, checked and completed (see the module docstring)."""

    kind: str  # "ode" | "delay"
    context: defaults.SolveDefaults
    y0: Any  # None for a delay solve that starts from its history
    params: Any
    t0: Any
    t1: Any
    spec: SolverSpec
    solver_reason: str
    method: GradientMethod
    method_reason: str  # why "auto" planned the method differently within the memory budget
    fixed: bool
    dt: Any
    rtol: Any
    atol: Any
    max_steps: int
    save: str  # "count" | "times" | "dense"
    n_save: int
    ts: Any  # the save times as an array, or None for evenly spaced points

    @property
    def dtype(self) -> Any:
        return float_dtype()

    @property
    def concrete_span(self) -> bool:
        return is_concrete(self.t0, self.t1)


def resolve(system: Any, *, kind: str, y0: Any, params: Any, t_span: Any, saveat: Any,
            solver: Any, rtol: Any, atol: Any, max_steps: Any, method: Any, dt: Any,
            default_max_steps: int = DEFAULT_MAX_STEPS, choose_solver: Any = None,
            memory_budget: Any = None) -> Settings:
    """Check and complete a solve's arguments (the delay integrator passes its own
    `choose_solver` and the `max_steps` default per interval)."""
    context = defaults.current()
    given_budget = check_memory_budget(memory_budget)
    if kind == "ode":
        y0 = system.y0 if y0 is None else system.check_y0(y0)
    params = as_params(system.merge_params(params), host=True)
    if not isinstance(system.params, Mapping):  # named values were checked as they were merged
        check_params_finite(params)
    t0, t1 = check_t_span(system.t_span if t_span is None else t_span)

    save, n_save, ts = save_times(saveat, t0, t1)
    if save != "dense":  # the interpolant's size depends on the solver: checked once it is known
        check_saved_points_memory(n_save, ts, len(system.states))

    solver = solver if solver is not None else context.solver
    solver = solver if solver is not None else "auto"
    reason = ""
    if isinstance(solver, str) and solver == "auto":
        choose = choose_solver or auto.choose_solver
        solver, reason = choose(system, y0, params, (t0, t1))
    spec = solver_spec(solver)

    max_steps = max_steps if max_steps is not None else context.max_steps
    n_max = check_count("max_steps", max_steps, default=default_max_steps, example=100000)

    method = method if method is not None else context.method
    method = method_object(method if method is not None else "auto")
    method_reason = ""
    chosen = method == "auto"
    if chosen:
        method = auto.choose_method(context.derivative, stiff=spec.stiff, kind=kind)
    if kind not in method.applies_to:
        raise MethodNotApplicableError(_not_applicable(method, kind))
    if kind == "ode":
        method = method.for_derivative(context.derivative)
        if chosen:
            problem = MemoryProblem(
                state_size=int(np.size(y0)) if y0 is not None else len(system.states),
                n_params=count_floats(params), max_steps=n_max, n_save=n_save,
                stages=solver_stages(spec.name), itemsize=np.dtype(float_dtype()).itemsize)
            budget = budget_in_force(given_budget if given_budget is not None
                                   else context.memory_budget)
            method, method_reason = auto.fit_to_budget(
                method, context.derivative, problem, budget, stiff=spec.stiff, kind=kind)

    fixed, dt, rtol, atol = step_settings(spec, dt, rtol, atol, context)
    return Settings(kind=kind, context=context, y0=y0, params=params, t0=t0, t1=t1, spec=spec,
                    solver_reason=reason, method=method, method_reason=method_reason,
                    fixed=fixed, dt=dt, rtol=rtol, atol=atol, max_steps=n_max, save=save,
                    n_save=n_save, ts=ts)


def _not_applicable(method: GradientMethod, kind: str) -> str:
    what = {"ode": "an ordinary System", "delay": "delay equations (ol.DelaySystem)"}[kind]
    able = ", ".join(repr(n) for n in method_names(kind))
    hint = ""
    if method.name == "backsolve" and kind == "delay":
        hint = " Its continuous counterpart for delay equations is method='delay-adjoint'."
    if method.name == "delay-adjoint" and kind == "ode":
        hint = " For an ODE the continuous adjoints are method='backsolve' and 'interpolating'."
    return (f"`method={method.name!r}` does not apply to {what}.{hint} Methods that do: {able}, "
            "or leave method='auto'.")


def step_settings(spec: SolverSpec, dt: Any, rtol: Any, atol: Any,
                  context: defaults.SolveDefaults):
    """(fixed, dt, rtol, atol) checked: explicit values, else the context's, else odelab's."""
    fixed = dt is not None
    if not fixed and not spec.adaptive:
        raise InputError(
            f"`solver={spec.name!r}` has no error estimate, so it cannot choose its own steps. "
            "Give a fixed step with dt=..., or use an adaptive solver such as solver='tsit5'."
        )
    if fixed:
        dt = scalar("dt", dt)
        if not isinstance(dt, jax.core.Tracer) and not dt > 0:
            raise InputError(f"`dt={dt!r}` must be a positive step size.")
    rtol = check_tolerance("rtol", _first(rtol, context.rtol, DEFAULT_RTOL))
    atol = check_tolerance("atol", _first(atol, context.atol, DEFAULT_ATOL))
    return fixed, dt, rtol, atol


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def save_times(saveat: Any, t0: Any, t1: Any) -> tuple[str, int, Any]:
    """("count" | "times" | "dense", number of save points, times as an array or None)."""
    if saveat is None:
        saveat = DEFAULT_SAVE_POINTS
    if isinstance(saveat, str):
        if saveat != "dense":
            raise InputError(
                f"`saveat={saveat!r}` is not known. Give a number of points (saveat=200), an array "
                "of times, or saveat='dense' for an interpolating solution."
            )
        return "dense", DEFAULT_SAVE_POINTS, None
    if isinstance(saveat, (bool, float)) or (
        isinstance(saveat, (int, np.integer)) and not isinstance(saveat, bool)
    ):
        if isinstance(saveat, bool) or not np.isfinite(saveat) or not float(saveat).is_integer():
            raise InputError(
                f"`saveat={saveat!r}`: give a whole number of save points (e.g. saveat=200)."
            )
        n = int(saveat)
        if n < 2:
            raise InputError(
                f"`saveat={n}` is too few; at least 2 save points (start and end) are needed."
            )
        return "count", n, None
    if isinstance(saveat, jax.core.Tracer):
        return "times", saveat.shape[0], saveat.astype(float_dtype())
    ts = float_array("saveat", saveat)
    if ts.ndim != 1 or ts.shape[0] == 0:
        raise InputError(f"`saveat` times must be a non-empty 1-D array; got shape {ts.shape}.")
    check_finite("saveat", ts)
    if np.any(np.diff(ts) < 0):
        raise InputError("`saveat` times must be sorted in increasing order.")
    if is_concrete(t0, t1) and (ts[0] < t0 or ts[-1] > t1):
        raise InputError(
            f"`saveat` times run from {ts[0]:g} to {ts[-1]:g}, outside t_span=({t0:g}, {t1:g}). "
            "Keep save times inside the time span."
        )
    return "times", ts.shape[0], jnp.asarray(ts, dtype=float_dtype())
