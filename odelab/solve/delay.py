"""The delay integrator: a DelaySystem's solve by the method of steps, one program per config.

The interval grid (breakpoints t0 + Σ k_j τ_j and multiples of the smallest delay) has a static
number of points sized from the delays known when the solve is traced; the points themselves
are traced, so delays that are parameters move them without recompiling. The gradient method
runs the sweep its own way (`GradientMethod.integrate_delay`): by default under its diffrax
adjoint, or, for `delay-adjoint`, by the continuous adjoint solved backward.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._compilations import SOLVE_TRACES
from .._errors import InputError
from .._inputs import check_memory, is_concrete, memory_limit, size_text, traced
from . import auto, failures
from .method_of_steps import (
    History,
    Past,
    Stepper,
    breakpoint_combinations,
    build_grid,
    empty_history,
    interval_bytes,
    sweep,
    uniform_count,
)
from .ode import stages
from .solution import GRID_TOO_SHORT, Solution, check_start
from .solvers import solver_spec

KIND = "delay"
DEFAULT_INTERVAL_STEPS = 1024  # max_steps of each interval between breakpoints
# a delay that is traced (differentiated, fitted) is sized for as small as this × its default
TRACED_DELAY_ROOM = 0.8


@dataclasses.dataclass(frozen=True)
class DelayConfig:
    """Everything about a delay solve that shapes the compiled program (hashable)."""

    f: Any
    history_fn: Any
    delays: tuple  # parameter names (str) or None for constant delays, per delay
    states: tuple[str, ...]
    system_name: str
    solver: str
    method: Any
    save: str
    n_save: int
    fixed_steps: bool
    max_steps: int
    y0_from_history: bool
    combos: tuple  # breakpoint combinations (tuples of ints)
    n_uniform: int
    solver_reason: str = dataclasses.field(default="", compare=False)


@dataclasses.dataclass
class DelayProblem:
    """One delay solve as a gradient method sees it (`GradientMethod.integrate_delay`)."""

    f: Callable
    stepper: Stepper
    past: Past  # the history, without the stored intervals
    taus: jax.Array
    delay_values: jax.Array  # constant delays' values (0 where the delay is a parameter)
    delays: tuple
    combos: tuple
    n_uniform: int
    grid: jax.Array
    y0: jax.Array
    ts: jax.Array
    t1: jax.Array
    max_steps: int

    @property
    def state_size(self) -> int:
        return int(self.y0.shape[0])

    def sweep_with(self, adjoint: Any):
        """(ys at the save times, final state, Sweep) of the forward sweep under `adjoint`."""
        past = dataclasses.replace(self.past, stored=empty_history(self.stepper, self.grid,
                                                                   self.y0))
        sw = sweep(self.f, self.stepper, past, self.taus, self.y0, adjoint)
        return jax.vmap(sw.stored.evaluate)(self.ts), sw.y_end, sw


# --------------------------------------------------------------------------------------------
# from checked settings to a program
# --------------------------------------------------------------------------------------------
def choose_solver(system: Any, y0: Any, params: Any, t_span: tuple[Any, Any]) -> tuple[str, str]:
    """`solver="auto"` for a delay equation: stiffness of ∂f/∂y at the start, the delayed
    states read from the history (no probe solve)."""
    ode_view = system.ode_view
    y0 = ode_view.y0 if y0 is None else y0
    return auto.choose_solver(ode_view, y0, params, t_span, probe=False)


def sizing_delays(system: Any, params: Any) -> list[float]:
    """Concrete delay values to size the grid with: given ones, else the system's defaults."""
    values = []
    for d in system.delays:
        if not isinstance(d, str):
            values.append(d)
            continue
        v = params[d]
        if isinstance(v, jax.core.Tracer):  # room for the delay to shrink by TRACED_DELAY_ROOM
            values.append(float(system.params[d]) * TRACED_DELAY_ROOM)
        else:
            v = float(np.asarray(v))
            system.check_delay_value(f"params[{d!r}] (a delay)", v)
            values.append(v)
    return values


def prepare(system: Any, s: Any) -> tuple[DelayConfig, dict[str, Any]]:
    """The static configuration and the traced inputs of a DelaySystem's solve (`s`: the
    resolved `settings.Settings`)."""
    if s.method.name == "delay-adjoint" and s.save == "dense":
        raise InputError(
            "`saveat='dense'` cannot be combined with method='delay-adjoint' (its backward pass "
            "differentiates the saved points only). Save at times (saveat=500 or an array)."
        )
    taus = sizing_delays(system, s.params)
    span = (s.t0, s.t1) if s.concrete_span else system.t_span
    n_uniform = system.max_intervals or uniform_count(span, min(taus))
    order = system.discontinuity_order or s.spec.order + 1
    combos = breakpoint_combinations(len(taus), order, int(np.argmin(taus)))
    if s.fixed and is_concrete(s.dt) and np.ceil(min(taus) / s.dt) > s.max_steps:
        raise InputError(
            f"`dt={s.dt:g}` needs {int(np.ceil(min(taus) / s.dt))} steps per interval (the "
            f"smallest delay is {min(taus):g}), more than max_steps={s.max_steps}. Raise "
            "max_steps."
        )
    check_history_memory(system, s, span, min(taus), n_uniform + len(combos) + 1)
    ts = s.ts
    if ts is None:  # evenly spaced points (and for dense, the interpolant is kept too)
        ts = jnp.linspace(traced(s.t0), traced(s.t1), s.n_save)
    config = DelayConfig(
        f=system.f, history_fn=system.history_fn,
        delays=tuple(d if isinstance(d, str) else None for d in system.delays),
        states=system.states, system_name=system.name, solver=s.spec.name, method=s.method,
        save=s.save, n_save=s.n_save, fixed_steps=s.fixed, max_steps=s.max_steps,
        y0_from_history=s.y0 is None, combos=tuple(map(tuple, combos.tolist())),
        n_uniform=n_uniform, solver_reason=s.solver_reason,
    )
    n = len(system.states)
    inputs = dict(
        y0=jnp.zeros(n, s.dtype) if s.y0 is None else jnp.asarray(s.y0, dtype=s.dtype),
        params=s.params, t0=traced(s.t0), t1=traced(s.t1), rtol=traced(s.rtol),
        atol=traced(s.atol), ts=ts, dt=traced(s.dt if s.fixed else 0.0),
        delay_values=jnp.asarray([0.0 if isinstance(d, str) else d for d in system.delays],
                                 dtype=s.dtype),
        history_value=jnp.asarray(system.history_value, dtype=s.dtype),
    )
    return config, inputs


def check_history_memory(system: Any, s: Any, span: tuple, smallest: float,
                         n_intervals: int) -> None:
    """Refuse, before compiling, a delay solve whose stored dense solution cannot fit: every
    interval between breakpoints keeps room for max_steps steps."""
    y0 = jnp.zeros(len(system.states), s.dtype)
    per_interval = interval_bytes(solver_spec(s.spec.name).make(), s.max_steps, s.fixed, y0)
    total = n_intervals * per_interval
    # per_interval grows with max_steps: the budget that would fit, with room for the rest
    fits = int(s.max_steps * min(1.0, memory_limit() / total) * 0.9)
    budget = (f" or a smaller step budget per interval: max_steps={fits} fits (each interval "
              f"spans at most {smallest:g})" if fits >= 8 else "")
    given = (f"max_intervals={system.max_intervals}" if system.max_intervals else
             f"the smallest delay, {smallest:g}, over t_span=({float(span[0]):g}, "
             f"{float(span[1]):g})")
    check_memory(
        f"{given} makes {n_intervals} intervals between breakpoints, each keeping the dense "
        f"solution of up to max_steps={s.max_steps} steps ({size_text(per_interval)} each)",
        total, f"Use a larger delay or a shorter t_span{budget}.")


def explain(system: Any, config: DelayConfig, sol: Solution, params: Any, rtol: Any,
            t_span: tuple[float, float]) -> str:
    """Why a delay solve failed, in plain words."""
    if int(sol.result) == GRID_TOO_SHORT:
        taus = sizing_delays(system, params)
        return (
            f"The breakpoint grid of {system.name!r} was sized for {config.n_uniform} multiples "
            f"of the smallest delay ({min(taus):g} when traced), which do not reach the end of "
            "t_span with the delays given. Pass max_intervals=... to ol.DelaySystem (e.g. "
            f"max_intervals={2 * config.n_uniform})."
        )
    return failures.explain(system, sol, params, rtol, t_span, ode_view=system.ode_view)


# --------------------------------------------------------------------------------------------
# the compiled program
# --------------------------------------------------------------------------------------------
def _taus(config: DelayConfig, params: Any, values: jax.Array) -> jax.Array:
    return jnp.stack([
        jnp.asarray(params[d], dtype=values.dtype) if d is not None else values[i]
        for i, d in enumerate(config.delays)
    ])


@eqx.filter_jit
def integrate(config: DelayConfig, inputs: dict[str, Any]) -> Solution:
    """The delay solve program for `config`, compiled once and called with `inputs`."""
    SOLVE_TRACES.bump()
    params = inputs["params"]
    taus = _taus(config, params, inputs["delay_values"])
    t0, t1 = inputs["t0"], inputs["t1"]
    combos = np.asarray(config.combos, dtype=np.int64).reshape(-1, len(config.delays))
    grid, covered = build_grid(t0, t1, taus, combos, config.n_uniform)
    stepper = Stepper(solver_spec(config.solver).make(), config.max_steps, config.fixed_steps,
                      inputs["rtol"], inputs["atol"], inputs["dt"])
    past = Past(t0, None, params, inputs["history_value"], config.history_fn)
    y0 = past.history(t0) if config.y0_from_history else inputs["y0"]
    problem = DelayProblem(
        f=config.f, stepper=stepper, past=past, taus=taus, delay_values=inputs["delay_values"],
        delays=config.delays, combos=config.combos, n_uniform=config.n_uniform, grid=grid,
        y0=y0, ts=inputs["ts"], t1=t1, max_steps=config.max_steps)
    ys, y_end, sw = config.method.integrate_delay(problem)
    result = jnp.where(covered, sw.result, GRID_TOO_SHORT)
    failed = result != 0
    dense = DelayInterpolation(sw.stored) if config.save == "dense" else None
    sol = Solution(
        ts=inputs["ts"],
        ys=ys,
        t_reached=jnp.where(failed, jnp.where(covered, sw.t_failed, t0), t1),
        y_reached=jnp.where(failed, sw.y_failed, y_end),
        result=result,
        num_steps=sw.num_steps,
        num_accepted=sw.num_accepted,
        num_rejected=sw.num_rejected,
        dense=dense,
        states=config.states,
        system_name=config.system_name,
        solver=config.solver,
        method=config.method.name,
        max_steps=config.max_steps,
        stages=stages(stepper.solver),
        solver_reason=config.solver_reason,
    )
    # the field at the start, its delayed states read from the history
    delayed = jax.vmap(lambda tau: past.history(t0 - tau))(taus)
    return check_start(sol, lambda t, y, a: config.f(t, y, *a), t0, y0, (delayed, params))


class DelayInterpolation(eqx.Module):
    """The dense solution of a delay solve on [t0, t1]: `sol.evaluate(t)`."""

    stored: History

    def evaluate(self, t: Any) -> jax.Array:
        grid = self.stored.grid
        return self.stored.evaluate(jnp.clip(t, grid[0], grid[-1]))
