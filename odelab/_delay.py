"""`DelaySystem`: delay differential equations y'(t) = f(t, y(t), y(t - τ_1), ..., p).

Solved by the method of steps on diffrax (see `_delay_steps`), through `ol.solve`, and
differentiable with respect to parameters, history parameters and the delays themselves by the
usual gradient methods and by `method="delay-adjoint"`, a continuous adjoint for delay equations
(see `_delay_adjoint`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _context
from ._delay_adjoint import DelayAdjoint, GridSpec, adjoint_solve
from ._delay_steps import (
    History,
    Past,
    Stepper,
    breakpoint_combinations,
    build_grid,
    empty_history,
    sweep,
    uniform_count,
)
from ._errors import (
    InputError,
    MethodNotApplicableError,
    OdelabError,
    VectorFieldError,
    closest,
)
from ._solution import Solution, result_name
from ._solve import (
    COMPILATIONS,
    _as_params,
    _check_params_finite,
    _concrete,
    _dtype,
    _save_times,
    _traced,
    choose_method,
    step_settings,
    stiffness_estimate,
)
from ._solvers import DEFAULT_EXPLICIT, DEFAULT_STIFF, solver_spec
from ._system import System, _check_finite, _float_array, check_t_span
from .methods import method_object
from .methods._over_forward import wants_route

DEFAULT_INTERVAL_STEPS = 1024  # max_steps of each interval between breakpoints
# a result code of our own (diffrax's are small integers): the breakpoint grid fell short
GRID_TOO_SHORT = 101
# a delay that is traced (differentiated, fitted) is sized for as small as this × its default
TRACED_DELAY_ROOM = 0.8
SUPPORTED_METHODS = ("checkpoint", "direct", "forward", "finite-difference", "delay-adjoint")


class DelaySystem:
    """A delay differential equation y'(t) = f(t, y(t), y_delayed, p) with named states.

    f(t, y, y_delayed, p): `y` has shape (n_states,), `y_delayed` has shape (n_delays, n_states)
    with row j the state at t - τ_j, in the order of `delays`; f returns dy/dt of shape
    (n_states,).

    delays: one delay or a sequence of them; each is a positive number (a constant) or the name
      of a scalar parameter (then it can be changed per solve and differentiated).
    history: the state before t0: a number, an array of shape (n_states,), or a function
      history(t, p) -> (n_states,) of time and the parameters (history parameters are
      differentiable like any other).
    y0: the state at t0; None (the default) continues the history, y0 = history(t0, p).
    max_intervals: how many multiples of the smallest delay the solver reserves (static). By
      default it is sized from the delays and t_span known when the solve is traced, allowing
      delays that are themselves traced (differentiated, fitted) to shrink to 0.8 × their
      default value; raise it when they may get smaller (the solve reports failure if the
      intervals fall short of t_span).
    discontinuity_order: breakpoints t0 + Σ k_j τ_j with Σ k_j up to this are steps' ends
      (default: the solver's order + 1). Multiples of the smallest delay always are.

        >>> def mackey_glass(t, y, yd, p):
        ...     return p["beta"] * yd[0] / (1 + yd[0] ** p["n"]) - p["gamma"] * y
        >>> mg = ol.DelaySystem(mackey_glass, delays="tau", history=0.5, states=("x",),
        ...                     params=dict(beta=2.0, gamma=1.0, n=9.65, tau=2.0),
        ...                     t_span=(0.0, 50.0))
        >>> sol = ol.solve(mg, saveat=500)
    """

    def __init__(
        self,
        f: Callable,
        delays: Any,
        history: Any,
        states: Sequence[str] | int,
        params: Any = None,
        y0: Any = None,
        t_span: tuple[float, float] = (0.0, 10.0),
        name: str | None = None,
        *,
        param_info: Mapping[str, Mapping[str, Any]] | None = None,
        description: str = "",
        stiff: bool | None = None,
        max_intervals: int | None = None,
        discontinuity_order: int | None = None,
    ):
        if not callable(f):
            raise InputError(
                "`f` must be a function f(t, y, y_delayed, p) returning dy/dt; got "
                f"{type(f).__name__}."
            )
        self.f = f
        self.name = name or getattr(f, "__name__", "delay_system")
        params = System._normalize_params(params if params is not None else {})
        self.delays = _check_delays(delays, params)
        self.max_intervals = _check_count("max_intervals", max_intervals)
        self.discontinuity_order = _check_count("discontinuity_order", discontinuity_order)
        n = len(states) if not isinstance(states, int) else states
        self._history_fn, self._history_value = _check_history(history, n, t_span, params)
        self.history = history
        # The ODE seen with the history fed in for the delayed states: it validates states,
        # params, y0 and t_span, gives slider metadata, and serves the stiffness estimate.
        frozen = _frozen_field(f, self)
        y0_view = y0 if y0 is not None else self._history_at(t_span, params)
        self._check_field(y0_view, t_span, params, n)
        self._ode = System(frozen, states=states, params=params, y0=y0_view, t_span=t_span,
                           name=self.name, param_info=param_info, description=description,
                           stiff=stiff)
        self.y0 = None if y0 is None else self._ode.y0

    # -- what a System also has -------------------------------------------------------------------
    states = property(lambda self: self._ode.states, doc="The names of the states, in order.")
    params = property(lambda self: self._ode.params,
                      doc="The default parameters (a dict; delays given by name are among them).")
    t_span = property(lambda self: self._ode.t_span, doc="The default time span (t0, t1).")
    param_info = property(lambda self: self._ode.param_info,
                          doc="Slider metadata (`ol.ParamInfo`) per scalar parameter.")
    param_names = property(lambda self: self._ode.param_names,
                           doc="Names of the scalar parameters (those that get sliders).")
    description = property(lambda self: self._ode.description,
                           doc="What the system models, shown by the explorer.")
    stiff = property(lambda self: self._ode.stiff,
                     doc='True/False decides `solver="auto"`; None: it measures stiffness.')

    def merge_params(self, params: Any) -> Any:
        """The system's parameters with `params` laid over them (as `System.merge_params`)."""
        return self._ode.merge_params(params)

    @property
    def delay_names(self) -> tuple[str, ...]:
        """The delays as written: parameter names, or the numbers of constant delays."""
        return tuple(d if isinstance(d, str) else f"{d:g}" for d in self.delays)

    def delay_values(self, params: Any = None) -> np.ndarray:
        """The delays (in the order of `delays`) for `params` laid over the system's own."""
        p = self.merge_params(params)
        return np.array([float(p[d]) if isinstance(d, str) else d for d in self.delays])

    def _history_at(self, t_span, params):
        t0 = float(check_t_span(t_span)[0])
        if self._history_fn is None:
            return np.asarray(self._history_value)
        value = np.asarray(self._history_fn(jnp.asarray(t0), params), dtype=np.float64)
        return np.broadcast_to(value, self._history_value.shape)

    def _check_field(self, y0, t_span, params, n):
        y0 = jnp.asarray(y0, dtype=jnp.float64)
        yd = jnp.zeros((len(self.delays), n), dtype=y0.dtype)
        try:
            out = jax.eval_shape(self.f, jnp.asarray(float(t_span[0])), y0, yd, params)
        except Exception as err:
            first = (str(err).strip().splitlines() or [""])[0]
            raise VectorFieldError(
                f"The vector field of {self.name!r} raised {type(err).__name__} when called as "
                f"f(t, y, y_delayed, p) with y of shape {y0.shape} and y_delayed of shape "
                f"{yd.shape} (one row per delay): {first}. "
                "Check the argument order and the indexing of y_delayed (y_delayed[j] is the "
                "state at t - τ_j)."
            ) from err
        if not hasattr(out, "shape") or out.shape != (n,):
            got = getattr(out, "shape", type(out).__name__)
            raise VectorFieldError(
                f"The vector field of {self.name!r} returned {got}; it must return an array of "
                f"shape ({n},), one derivative per state. Wrap a list with jnp.stack([...])."
            )
        if not jnp.issubdtype(out.dtype, jnp.floating):
            raise VectorFieldError(
                f"The vector field of {self.name!r} returned dtype {out.dtype}; return "
                "floating-point values."
            )

    def __call__(self, t: Any, y: Any, y_delayed: Any, p: Any = None) -> jax.Array:
        """Evaluate the vector field (with the system's params when `p` is None)."""
        return self.f(t, jnp.asarray(y), jnp.asarray(y_delayed), self.params if p is None else p)

    def __repr__(self) -> str:
        params = self._ode.__repr__().split("params=", 1)[1].split(", t_span")[0]
        return (
            f"DelaySystem({self.name!r}, states={self.states}, delays={self.delay_names}, "
            f"params={params}, t_span={self.t_span})"
        )

    # -- solving ----------------------------------------------------------------------------------
    def solve_delay(self, y0=None, params=None, t_span=None, saveat=None, solver=None, rtol=None,
                    atol=None, max_steps=None, method=None, dt=None, throw=True) -> Solution:
        """Solve by the method of steps; `ol.solve(delay_system, ...)` calls this.

        The arguments mean what they mean for `ol.solve`, except `max_steps`, which bounds the
        steps of each interval between breakpoints (default 1024).
        """
        return _solve(self, y0, params, t_span, saveat, solver, rtol, atol, max_steps, method,
                      dt, throw)


# --------------------------------------------------------------------------------------------
# checks made when a DelaySystem is built
# --------------------------------------------------------------------------------------------
def _check_delays(delays: Any, params: Any) -> tuple[str | float, ...]:
    if isinstance(delays, (str, int, float, np.number)) and not isinstance(delays, bool):
        delays = (delays,)
    try:
        delays = tuple(delays)
    except TypeError:
        raise InputError(
            f"`delays` must be a number, a parameter name, or a list of them; got {delays!r}."
        ) from None
    if not delays:
        raise InputError("`delays` is empty; a delay equation needs at least one delay.")
    names = list(params) if isinstance(params, Mapping) else []
    out: list[str | float] = []
    for d in delays:
        if isinstance(d, str):
            if d not in names:
                raise InputError(
                    f"`delays` names {d!r}, which is not a parameter.{closest(d, names)} Give "
                    f"a number, or add {d!r} to params (params=dict({d}=1.0, ...))."
                )
            if np.ndim(params[d]) != 0:
                raise InputError(f"`delays` names {d!r}, but params[{d!r}] is not one number.")
            _check_delay_value(f"params[{d!r}] (a delay)", float(params[d]))
            out.append(d)
        elif isinstance(d, bool) or not isinstance(d, (int, float, np.number)):
            raise InputError(
                f"`delays` contains {d!r}; each delay is a positive number or a parameter name."
            )
        else:
            _check_delay_value("delays", float(d))
            out.append(float(d))
    return tuple(out)


def _check_delay_value(argument: str, value: float) -> None:
    if not np.isfinite(value) or value < 0:
        raise InputError(f"`{argument}={value!r}` must be a positive, finite delay.")
    if value == 0:
        raise InputError(
            f"`{argument}=0`: a zero delay makes y(t - τ) the current state, so the equation is "
            "an ODE. Use the current state y instead (or an ol.System)."
        )


def _check_count(argument: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"`{argument}={value!r}` must be a positive whole number.")
    return int(value)


def _check_history(history: Any, n: int, t_span: Any, params: Any):
    """(history function or None, constant history value of shape (n,))."""
    if callable(history):
        t0 = float(check_t_span(t_span)[0])
        try:
            out = jax.eval_shape(history, jnp.asarray(t0), params)
        except Exception as err:
            raise InputError(
                f"`history` raised {type(err).__name__} when called as history(t, p): {err}. "
                "It must take the time and the parameters and return the state before t0."
            ) from err
        if not hasattr(out, "shape") or out.shape not in ((n,), ()):
            raise InputError(
                f"`history(t, p)` returned {getattr(out, 'shape', type(out).__name__)}; it must "
                f"return shape ({n},), the state at time t < t0."
            )
        return history, np.zeros(n)
    value = _float_array("history", history)
    if value.shape not in ((), (n,)):
        raise InputError(
            f"`history` has shape {value.shape}; give one number, {n} values (one per state), "
            "or a function history(t, p)."
        )
    _check_finite("history", value)
    return None, np.broadcast_to(value, (n,)).astype(np.float64)


def _frozen_field(f: Callable, system: DelaySystem) -> Callable:
    """f with the history fed in for the delayed states: an ODE for the stiffness estimate."""

    def frozen(t, y, p):
        values = [p[d] if isinstance(d, str) else d for d in system.delays]
        if system._history_fn is None:
            yd = jnp.broadcast_to(jnp.asarray(system._history_value), (len(values), y.shape[0]))
        else:
            yd = jnp.stack([jnp.broadcast_to(system._history_fn(t - v, p), y.shape)
                            for v in values])
        return f(t, y, yd.astype(y.dtype), p)

    return frozen


# --------------------------------------------------------------------------------------------
# the static configuration and the compiled program
# --------------------------------------------------------------------------------------------
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


def _taus(config: DelayConfig, params: Any, values: jax.Array) -> jax.Array:
    return jnp.stack([
        jnp.asarray(params[d], dtype=values.dtype) if d is not None else values[i]
        for i, d in enumerate(config.delays)
    ])


@eqx.filter_jit
def _compiled(config: DelayConfig, inputs: dict[str, Any]) -> Solution:
    COMPILATIONS.bump()
    return _integrate(config, inputs)


def _integrate(config: DelayConfig, inputs: dict[str, Any]) -> Solution:
    params = inputs["params"]
    taus = _taus(config, params, inputs["delay_values"])
    t0, t1 = inputs["t0"], inputs["t1"]
    combos = np.asarray(config.combos, dtype=np.int64).reshape(-1, len(config.delays))
    grid, covered = build_grid(t0, t1, taus, combos, config.n_uniform)
    stepper = Stepper(solver_spec(config.solver).make(), config.max_steps, config.fixed_steps,
                      inputs["rtol"], inputs["atol"], inputs["dt"])
    past = Past(t0, None, params, inputs["history_value"], config.history_fn)
    y0 = past.history(t0) if config.y0_from_history else inputs["y0"]
    if isinstance(config.method, DelayAdjoint):
        out = adjoint_solve(config.f, stepper, past, inputs["delay_values"], config.delays,
                            GridSpec(config.combos, config.n_uniform), y0, inputs["ts"], t1)
    else:
        past = dataclasses.replace(past, stored=empty_history(stepper, grid, y0))
        adjoint = config.method.adjoint(max_steps=config.max_steps, state_size=y0.shape[0])
        out = _plain_solve(config.f, stepper, past, taus, y0, inputs["ts"], adjoint)
    ys, y_end, sw = out
    result = jnp.where(covered, sw.result, GRID_TOO_SHORT)
    failed = result != 0
    dense = None
    if config.save == "dense":
        dense = DelayInterpolation(sw.stored)
    return Solution(
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
        stages=_stages(stepper.solver),
        solver_reason=config.solver_reason,
    )


def _stages(solver) -> int:
    tableau = getattr(solver, "tableau", None)
    c = getattr(tableau, "c", None)
    return len(c) + 1 if c is not None else 1


def _plain_solve(f, stepper, past, taus, y0, ts, adjoint):
    """Forward sweep differentiated by JAX through diffrax's own adjoint (checkpoint, ...)."""
    sw = sweep(f, stepper, past, taus, y0, adjoint)
    ys = jax.vmap(sw.stored.evaluate)(ts)
    return ys, sw.y_end, sw


class DelayInterpolation(eqx.Module):
    """The dense solution of a delay solve on [t0, t1]: `sol.evaluate(t)`."""

    stored: History

    def evaluate(self, t: Any) -> jax.Array:
        grid = self.stored.grid
        return self.stored.evaluate(jnp.clip(t, grid[0], grid[-1]))


# --------------------------------------------------------------------------------------------
# resolving the user's arguments
# --------------------------------------------------------------------------------------------
def _resolve_method(method: Any, defaults: Any):
    method = method if method is not None else defaults.method
    method = method_object(method if method is not None else "auto")
    if method == "auto":
        method = choose_method(defaults.derivative)
        # an ODE-only method, or checkpoint's reverse-over-forward rule (ODE solves only):
        # take the plain one
        if method.name not in SUPPORTED_METHODS or wants_route(defaults.derivative):
            direction, order = (defaults.derivative or ("reverse", 1))[:2]
            name = "direct" if order >= 2 else (
                "forward" if direction == "forward" else "checkpoint")
            method = method_object(name)
    if method.name not in SUPPORTED_METHODS:
        hint = (" Its continuous counterpart for delay equations is method='delay-adjoint'."
                if method.name == "backsolve" else "")
        raise MethodNotApplicableError(
            f"`method={method.name!r}` does not apply to delay equations.{hint} Methods for a "
            f"DelaySystem: {', '.join(map(repr, SUPPORTED_METHODS))}."
        )
    return method


def _choose_solver(system: DelaySystem, y0, params, t_span) -> tuple[str, str]:
    """`solver="auto"`: stiff when the system says so, or when the Jacobian ∂f/∂y at the start
    (delayed states read from the history) has max|Re λ|·(t1 − t0) above the threshold."""
    from ._solve import STIFFNESS_THRESHOLD

    if system.stiff is not None:
        name = DEFAULT_STIFF if system.stiff else DEFAULT_EXPLICIT
        return name, f"system {system.name!r} is marked stiff={system.stiff}"
    y0 = system._ode.y0 if y0 is None else y0
    if not _concrete(y0, params, t_span):  # inside a transform: decide at the defaults
        y0, params, t_span = system._ode.y0, system.params, system.t_span
    s = stiffness_estimate(system._ode, y0, params, t_span)
    if s > STIFFNESS_THRESHOLD:
        return DEFAULT_STIFF, f"stiff: max|Re λ|·(t1−t0) = {s:.3g} at the initial state"
    return DEFAULT_EXPLICIT, f"non-stiff: max|Re λ|·(t1−t0) = {s:.3g} at the initial state"


def _sizing_delays(system: DelaySystem, params: Any) -> list[float]:
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
            _check_delay_value(f"params[{d!r}] (a delay)", v)
            values.append(v)
    return values


def _solve(system: DelaySystem, y0, params, t_span, saveat, solver, rtol, atol, max_steps,
           method, dt, throw) -> Solution:
    from ._solve import _check_max_steps

    defaults = _context.current()
    params = _as_params(system.merge_params(params))
    _check_params_finite(params)
    t0, t1 = check_t_span(system.t_span if t_span is None else t_span)
    y0 = None if y0 is None else system._ode.check_y0(y0)
    if y0 is None and system.y0 is not None:
        y0 = system.y0

    solver = solver if solver is not None else defaults.solver
    solver = solver if solver is not None else "auto"
    reason = ""
    if solver == "auto":
        solver, reason = _choose_solver(system, y0, params, (t0, t1))
    spec = solver_spec(solver)
    method = _resolve_method(method, defaults)
    if isinstance(method, DelayAdjoint) and isinstance(saveat, str) and saveat == "dense":
        raise InputError(
            "`saveat='dense'` cannot be combined with method='delay-adjoint' (its backward pass "
            "differentiates the saved points only). Save at times (saveat=500 or an array)."
        )

    fixed, dt, rtol, atol = step_settings(spec, dt, rtol, atol, defaults)
    n_max = _check_max_steps(max_steps if max_steps is not None else DEFAULT_INTERVAL_STEPS)

    taus = _sizing_delays(system, params)
    span = (t0, t1) if _concrete(t0, t1) else system.t_span
    n_uniform = system.max_intervals or uniform_count(span, min(taus))
    order = system.discontinuity_order or spec.order + 1
    combos = breakpoint_combinations(len(taus), order, int(np.argmin(taus)))
    if fixed and _concrete(dt) and np.ceil(min(taus) / dt) > n_max:
        raise InputError(
            f"`dt={dt:g}` needs {int(np.ceil(min(taus) / dt))} steps per interval (the smallest "
            f"delay is {min(taus):g}), more than max_steps={n_max}. Raise max_steps."
        )
    save, n_save, ts = _save_times(saveat, t0, t1)
    if ts is None:  # dense: the saved points are evenly spaced, the interpolant is kept
        ts = jnp.linspace(_traced(t0), _traced(t1), n_save)

    config = DelayConfig(
        f=system.f, history_fn=system._history_fn,
        delays=tuple(d if isinstance(d, str) else None for d in system.delays),
        states=system.states, system_name=system.name, solver=spec.name, method=method,
        save=save, n_save=n_save, fixed_steps=fixed, max_steps=n_max,
        y0_from_history=y0 is None, combos=tuple(map(tuple, combos.tolist())),
        n_uniform=n_uniform, solver_reason=reason,
    )
    n = len(system.states)
    inputs = dict(
        y0=jnp.zeros(n, _dtype()) if y0 is None else jnp.asarray(y0, dtype=_dtype()),
        params=params, t0=_traced(t0), t1=_traced(t1), rtol=_traced(rtol), atol=_traced(atol),
        ts=ts, dt=_traced(dt if fixed else 0.0),
        delay_values=jnp.asarray([0.0 if isinstance(d, str) else d for d in system.delays],
                                 dtype=_dtype()),
        history_value=jnp.asarray(system._history_value, dtype=_dtype()),
    )
    if not _concrete(inputs):
        sol = _call(config, inputs)
        _context.record(sol.result, sol.t_reached)
        return sol
    start = time.perf_counter()
    before = COMPILATIONS.traces
    sol = jax.block_until_ready(_call(config, inputs))
    if COMPILATIONS.traces > before:
        COMPILATIONS.compile_seconds += time.perf_counter() - start
    if not sol.ok:
        sol = dataclasses.replace(sol, failure_hint=_explain(system, sol, n_uniform, taus))
        if throw:
            from ._errors import SolveError

            raise SolveError(sol.failure_hint)
    return sol


def _call(config: DelayConfig, inputs: dict[str, Any]) -> Solution:
    try:
        return _compiled(config, inputs)
    except OdelabError:
        raise
    except Exception as err:
        from ._solve import _translate

        raise _translate(err, config) from err


def _explain(system: DelaySystem, sol: Solution, n_uniform: int, taus: list[float]) -> str:
    code = int(sol.result)
    t = float(sol.t_reached)
    if code == GRID_TOO_SHORT:
        return (
            f"The breakpoint grid of {system.name!r} was sized for {n_uniform} multiples of the "
            f"smallest delay ({min(taus):g} when traced), which do not reach the end of t_span "
            "with the delays given. Pass max_intervals=... to ol.DelaySystem (e.g. "
            f"max_intervals={2 * n_uniform})."
        )
    y = np.asarray(sol.y_reached)
    if not np.all(np.isfinite(y)):
        return (
            f"The solution of {system.name!r} blew up near t={t:.6g}. Check the parameters and "
            "the vector field, or shorten t_span."
        )
    if "max_steps" in result_name(code):
        return (
            f"An interval of {system.name!r} starting at t={t:.6g} needed more than "
            f"max_steps={sol.max_steps} steps (max_steps counts the steps of each interval "
            "between breakpoints). Raise max_steps, loosen rtol, or try a stiff solver "
            "(solver='kvaerno5')."
        )
    return f"The delay solve of {system.name!r} stopped near t={t:.6g}: {result_name(code)}."
