"""`DelaySystem`: delay differential equations y'(t) = f(t, y(t), y(t - τ_1), ..., p).

Solved by the method of steps on diffrax (`odelab.solve.delay`), through `ol.solve`, and
differentiable with respect to parameters, history parameters and the delays themselves by the
usual gradient methods and by `method="delay-adjoint"`, a continuous adjoint for delay equations
(`odelab.methods.delay_adjoint`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _events
from .._errors import InputError, VectorFieldError, closest
from .._inputs import check_count, check_finite, check_t_span, float_array
from .ode import System, check_states, check_y0


class _OdeView(System):
    """A DelaySystem seen as an ODE (its history fed in for the delayed states); internal."""

    def _announce(self) -> None:  # the DelaySystem announces itself
        pass


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

    kind = "delay"  # the integrator `ol.solve` dispatches to

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
        self.max_intervals = check_count("max_intervals", max_intervals)
        self.discontinuity_order = check_count("discontinuity_order", discontinuity_order)
        states = check_states(states)
        n = len(states)
        self.history_fn, self.history_value = _check_history(history, n, t_span, params)
        self.history = history
        # The ODE seen with the history fed in for the delayed states: it validates params and
        # t_span, gives slider metadata, and serves the stiffness estimate.
        frozen = _frozen_field(f, self)
        y0_view = (check_y0(y0, states, self.name) if y0 is not None
                   else self._history_at(t_span, params))
        self._check_field(y0_view, t_span, params, n)
        self.ode_view = _OdeView(frozen, states=states, params=params, y0=y0_view,
                                 t_span=t_span, name=self.name, param_info=param_info,
                                 description=description, stiff=stiff)
        self.y0 = None if y0 is None else self.ode_view.y0
        _events.emit(_events.SYSTEM, system=self)

    # -- what a System also has -------------------------------------------------------------------
    states = property(lambda self: self.ode_view.states, doc="The names of the states, in order.")
    params = property(lambda self: self.ode_view.params,
                      doc="The default parameters (a dict; delays given by name are among them).")
    t_span = property(lambda self: self.ode_view.t_span, doc="The default time span (t0, t1).")
    param_info = property(lambda self: self.ode_view.param_info,
                          doc="Slider metadata (`ol.ParamInfo`) per scalar parameter.")
    param_names = property(lambda self: self.ode_view.param_names,
                           doc="Names of the scalar parameters (those that get sliders).")
    description = property(lambda self: self.ode_view.description,
                           doc="What the system models, shown by the explorer.")
    stiff = property(lambda self: self.ode_view.stiff,
                     doc='True/False decides `solver="auto"`; None: it measures stiffness.')

    def merge_params(self, params: Any) -> Any:
        """The system's parameters with `params` laid over them (as `System.merge_params`)."""
        return self.ode_view.merge_params(params)

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
        if self.history_fn is None:
            return np.asarray(self.history_value)
        value = np.asarray(self.history_fn(jnp.asarray(t0), params), dtype=np.float64)
        return np.broadcast_to(value, self.history_value.shape)

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
        params = self.ode_view.__repr__().split("params=", 1)[1].split(", t_span")[0]
        return (
            f"DelaySystem({self.name!r}, states={self.states}, delays={self.delay_names}, "
            f"params={params}, t_span={self.t_span})"
        )

    # -- solving ----------------------------------------------------------------------------------
    def initial_state(self, y0: Any) -> Any:
        """The y0 a solve starts from: `y0` checked, else the system's, else None (the history)."""
        if y0 is not None:
            return self.ode_view.check_y0(y0)
        return self.y0

    @staticmethod
    def check_delay_value(argument: str, value: float) -> None:
        """InputError unless `value` is a positive, finite delay."""
        _check_delay_value(argument, value)


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
    value = float_array("history", history)
    if value.shape not in ((), (n,)):
        raise InputError(
            f"`history` has shape {value.shape}; give one number, {n} values (one per state), "
            "or a function history(t, p)."
        )
    check_finite("history", value)
    return None, np.broadcast_to(value, (n,)).astype(np.float64)


def _frozen_field(f: Callable, system: DelaySystem) -> Callable:
    """f with the history fed in for the delayed states: an ODE for the stiffness estimate."""

    def frozen(t, y, p):
        values = [p[d] if isinstance(d, str) else d for d in system.delays]
        if system.history_fn is None:
            yd = jnp.broadcast_to(jnp.asarray(system.history_value), (len(values), y.shape[0]))
        else:
            yd = jnp.stack([jnp.broadcast_to(system.history_fn(t - v, p), y.shape)
                            for v in values])
        return f(t, y, yd.astype(y.dtype), p)

    return frozen
