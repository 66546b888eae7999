"""`System`: an ODE vector field with named states, parameters, defaults and slider metadata."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _events
from .._errors import InputError, VectorFieldError, closest
from .._inputs import (
    check_finite,
    check_identifier,
    check_param_value,
    check_t_span,
    float_array,
)
from .equations import parse_equations

VectorField = Callable[[Any, jax.Array, Any], jax.Array]


@dataclasses.dataclass(frozen=True)
class ParamInfo:
    """What a widget needs to know about one scalar parameter.

    `lo`/`hi` bound the slider, `log` puts it on a log scale, `unit` and `description` label it.
    """

    name: str
    default: float
    lo: float
    hi: float
    log: bool = False
    unit: str = ""
    description: str = ""

    @staticmethod
    def guess(name: str, default: float, **given: Any) -> ParamInfo:
        """Sensible slider metadata for `default`, overridden by whatever is `given`."""
        if "range" in given:
            given["lo"], given["hi"] = given.pop("range")
        if default > 0:
            lo, hi, log = default / 10.0, default * 10.0, True
        elif default < 0:
            lo, hi, log = default * 10.0, -default * 10.0, False
        else:
            lo, hi, log = -1.0, 1.0, False
        fields = {"lo": lo, "hi": hi, "log": log}
        unknown = set(given) - {"lo", "hi", "log", "unit", "description"}
        if unknown:
            bad = sorted(unknown)[0]
            raise InputError(
                f"`param_info[{name!r}]` has an unknown key {bad!r}."
                f"{closest(bad, ['range', 'lo', 'hi', 'log', 'unit', 'description'])} "
                "Use range=(lo, hi), log=True/False, unit='...', description='...'."
            )
        fields.update(given)
        info = ParamInfo(name=name, default=float(default), **fields)
        if not info.lo < info.hi:
            raise InputError(
                f"`param_info[{name!r}]` has range ({info.lo}, {info.hi}); the lower end must be "
                "below the upper end."
            )
        if info.log and info.lo <= 0:
            raise InputError(
                f"`param_info[{name!r}]` asks for a log scale over ({info.lo}, {info.hi}); a log "
                "scale needs a positive range. Give range=(lo, hi) with lo > 0, or log=False."
            )
        return info


def check_states(states: Any) -> tuple[str, ...]:
    """The state names: a sequence of names, or a count n for the names y0..y{n-1}."""
    if isinstance(states, (int, np.integer)) and not isinstance(states, (bool, np.bool_)):
        states = tuple(f"y{i}" for i in range(states))
    if isinstance(states, str):
        raise InputError(
            f"`states={states!r}` is a single string; give a tuple of names, e.g. "
            f"states=({states!r},)."
        )
    if not isinstance(states, (list, tuple)):
        raise InputError(f"`states={states!r:.40}` must be a tuple of state names, e.g. "
                         "states=('x', 'y'), or their number.")
    states = tuple(check_identifier("states", s) for s in states)
    if len(states) == 0:
        raise InputError("`states` is empty; a system needs at least one state.")
    if len(set(states)) != len(states):
        dup = next(s for s in states if states.count(s) > 1)
        raise InputError(f"`states` names {dup!r} twice; every state needs its own name.")
    return states


def check_y0(y0: Any, states: tuple[str, ...], name: str) -> Any:
    """`y0` as a float64 array of the right length (a mapping by state name is accepted)."""
    if isinstance(y0, Mapping):
        missing = [s for s in states if s not in y0]
        unknown = [k for k in y0 if k not in states]
        if unknown:
            raise InputError(
                f"`y0` names {unknown[0]!r}, which is not a state."
                f"{closest(unknown[0], states)} States: {', '.join(states)}."
            )
        if missing:
            raise InputError(
                f"`y0` has no value for state {missing[0]!r}; give every state a value: "
                f"{', '.join(states)}."
            )
        y0 = [y0[s] for s in states]
    if isinstance(y0, jax.core.Tracer):
        if y0.shape != (len(states),):
            raise InputError(
                f"`y0` has shape {y0.shape}; system {name!r} has {len(states)} "
                f"states ({', '.join(states)}), so y0 needs shape ({len(states)},)."
            )
        return y0
    arr = float_array("y0", y0)
    if arr.shape != (len(states),):
        raise InputError(
            f"`y0` has shape {arr.shape}; system {name!r} has {len(states)} states "
            f"({', '.join(states)}), so y0 needs {len(states)} values."
        )
    check_finite("y0", arr)
    return arr


class System:
    """An ODE system dy/dt = f(t, y, p) with named states and parameters.

    Example:
        >>> def lv(t, y, p):
        ...     x, z = y
        ...     return jnp.stack([p["a"] * x - p["b"] * x * z, -p["c"] * z + p["d"] * x * z])
        >>> sys = System(lv, states=("x", "z"), params=dict(a=1.0, b=0.5, c=2.0, d=0.5),
        ...              y0=[1.0, 0.5], t_span=(0.0, 10.0), name="lv")

    `params` may be any pytree: a dict of floats (each gets a slider), arrays, or equinox modules
    (a neural network inside the vector field). `param_info` gives slider metadata per scalar
    parameter: ``{"a": dict(range=(0.1, 5), log=True, unit="1/s", description="growth")}``.
    """

    kind = "ode"  # the integrator `ol.solve` dispatches to

    def __init__(
        self,
        f: VectorField,
        states: Sequence[str] | int,
        params: Any = None,
        y0: Any = None,
        t_span: tuple[float, float] = (0.0, 10.0),
        name: str | None = None,
        *,
        param_info: Mapping[str, Mapping[str, Any]] | None = None,
        description: str = "",
        stiff: bool | None = None,
        data: tuple[Any, Any] | None = None,
        equations: str | None = None,
        exact: Callable[..., Any] | None = None,
    ):
        if not callable(f):
            raise InputError(
                f"`f` must be a function f(t, y, p) returning dy/dt; got {type(f).__name__}."
            )
        states = check_states(states)
        self.f = f
        self.states = states
        self.name = name or getattr(f, "__name__", "system")
        self.description = description
        self.stiff = stiff
        self.equations = equations
        self.exact = exact  # a closed-form solution exact(ts, y0=None, params=None), if known
        self.params = self._normalize_params(params if params is not None else {})
        self.y0 = self.check_y0(y0 if y0 is not None else np.zeros(len(states)))
        self.t_span = check_t_span(t_span)
        self.param_info = self._build_param_info(param_info or {})
        self.data = None if data is None else self._check_data(data)
        self._check_vector_field()
        self._announce()

    def _announce(self) -> None:
        """Tell listeners (the JupyterLab sidebar) that a system was defined."""
        _events.emit(_events.SYSTEM, system=self)

    # -- parameters ---------------------------------------------------------------------------
    @staticmethod
    def _normalize_params(params: Any) -> Any:
        if isinstance(params, Mapping):
            out = {}
            for key, value in params.items():
                check_identifier("params", key)
                if isinstance(value, bool):
                    raise InputError(f"`params[{key!r}]` is a bool; parameters must be numbers.")
                if value is None or isinstance(value, (str, bytes)):
                    raise InputError(
                        f"`params[{key!r}]={value!r:.60}` is not a number; give its value, e.g. "
                        f"params={{{key!r}: 1.0}}.")
                if isinstance(value, (int, float, np.number, list, tuple, np.ndarray)):
                    arr = float_array(f"params[{key!r}]", value)
                    check_finite(f"params[{key!r}]", arr)
                    value = jnp.asarray(arr) if arr.ndim else float(arr)
                out[key] = value
            return out
        return params

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the scalar parameters (those that get sliders)."""
        if isinstance(self.params, Mapping):
            return tuple(k for k, v in self.params.items() if np.ndim(v) == 0)
        return ()

    def _build_param_info(self, given: Mapping[str, Mapping[str, Any]]) -> dict[str, ParamInfo]:
        names = self.param_names
        for key in given:
            if key not in names:
                raise InputError(
                    f"`param_info` names {key!r}, which is not a scalar parameter of this system."
                    f"{closest(key, names)} Parameters: {', '.join(names) or '(none)'}."
                )
        return {
            k: ParamInfo.guess(k, float(self.params[k]), **dict(given.get(k, {}))) for k in names
        }

    def merge_params(self, params: Any) -> Any:
        """The system's parameters with `params` laid over them.

        For dict parameters a partial dict overrides just the named entries; otherwise `params`
        replaces the whole pytree and must have the same structure.
        """
        if params is None:
            return self.params
        if isinstance(self.params, Mapping) and isinstance(params, Mapping):
            unknown = [k for k in params if k not in self.params]
            if unknown:
                k = unknown[0]
                raise InputError(
                    f"`params` names {k!r}, which system {self.name!r} does not have."
                    f"{closest(k, self.params)} Its parameters are: "
                    f"{', '.join(self.params) or '(none)'}."
                )
            merged = dict(self.params)
            for k, v in params.items():
                merged[k] = check_param_value(f"params[{k!r}]", v, self.params[k])
            return merged
        expected = jax.tree_util.tree_structure(self.params)
        got = jax.tree_util.tree_structure(params)
        if expected != got:
            raise InputError(
                f"`params` has structure {got} but system {self.name!r} expects {expected}. "
                "Pass a pytree shaped like `system.params` (e.g. an updated copy of it)."
            )
        return params

    # -- initial state, time span, data -------------------------------------------------------
    def check_y0(self, y0: Any) -> Any:
        """`y0` as a float64 array of the right length (a mapping by state name is accepted)."""
        return check_y0(y0, self.states, self.name)

    def _check_data(self, data: tuple[Any, Any]) -> tuple[np.ndarray, np.ndarray]:
        try:
            ts, ys = data
        except (TypeError, ValueError):
            raise InputError(
                "`data` must be a pair (ts, ys) of observation times and values."
            ) from None
        ts = float_array("data[0] (times)", ts)
        ys = float_array("data[1] (values)", ys)
        if ys.shape != (ts.shape[0], len(self.states)):
            raise InputError(
                f"`data` values have shape {ys.shape}; expected ({ts.shape[0]}, {len(self.states)})"
                " (one row per time, one column per state; use NaN for unobserved entries)."
            )
        return ts, ys

    # -- the vector field -----------------------------------------------------------------------
    def _check_vector_field(self) -> None:
        """Evaluate f abstractly once so shape, dtype and exceptions surface at definition time."""
        y0 = jnp.asarray(self.y0)
        try:
            out = eqx.filter_eval_shape(self.f, jnp.asarray(self.t_span[0]), y0, self.params)
        except Exception as err:  # the user's function raised: say where, keep their message
            raise VectorFieldError(
                f"The vector field of {self.name!r} raised {type(err).__name__} when called as "
                f"f(t, y, p) with y of shape {y0.shape} and the system's params: "
                f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}. "
                "Check that f takes (t, y, p) in that order and indexes p and y correctly."
            ) from err
        if not hasattr(out, "shape"):
            raise VectorFieldError(
                f"The vector field of {self.name!r} returned {type(out).__name__}; it must return "
                f"an array of shape {y0.shape}. Wrap a list with jnp.stack([...])."
            )
        if out.shape != y0.shape:
            raise VectorFieldError(
                f"The vector field of {self.name!r} returned shape {out.shape}, but the state "
                f"has shape {y0.shape} ({', '.join(self.states)}). f must return one derivative "
                "per state."
            )
        if not jnp.issubdtype(out.dtype, jnp.floating):
            raise VectorFieldError(
                f"The vector field of {self.name!r} returned dtype {out.dtype}; it must return "
                "floating-point values. Avoid integer division (//) and integer constants."
            )

    def __call__(self, t: Any, y: Any, p: Any = None) -> jax.Array:
        """Evaluate the vector field (with the system's params when `p` is None)."""
        return self.f(t, jnp.asarray(y), self.params if p is None else p)

    @classmethod
    def from_equations(
        cls,
        text: str,
        params: Mapping[str, float] | None = None,
        y0: Mapping[str, float] | Sequence[float] | None = None,
        t_span: tuple[float, float] = (0.0, 10.0),
        name: str = "equations",
        **kwargs: Any,
    ) -> System:
        """A system from equations typed as text, one per line.

        Accepts ``x' = a*x - b*x*y`` and ``dx/dt = ...`` forms, numbers, names, + - * / ** ^,
        parentheses and a whitelist of math functions (sin, exp, log, sqrt, tanh, ...). Anything
        else (attribute access, indexing, unknown functions, lambdas) is rejected; the text is
        never evaluated as Python.

            >>> System.from_equations("x' = a*x - b*x*y\\ny' = -c*y + d*x*y",
            ...                       params=dict(a=1, b=0.5, c=2, d=0.5), y0=dict(x=1, y=0.5))
        """
        parsed = parse_equations(text, params=params)
        for key, value in (params or {}).items():
            # the equations use each parameter as one number
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) and (
                    not isinstance(value, (np.ndarray, jnp.ndarray)) or np.ndim(value) != 0):
                raise InputError(
                    f"`params[{key!r}]={value!r:.60}`: a parameter of equations must be a single "
                    f"number, e.g. params={{{key!r}: 1.0}}.")
        return cls(
            parsed.vector_field,
            states=parsed.states,
            params=dict(params or {}),
            y0=y0,
            t_span=t_span,
            name=name,
            equations=text,
            **kwargs,
        )

    def replace(self, **changes: Any) -> System:
        """A copy with some fields changed (e.g. ``sys.replace(y0=[1, 2])``)."""
        fields = dict(
            f=self.f,
            states=self.states,
            params=self.params,
            y0=self.y0,
            t_span=self.t_span,
            name=self.name,
            description=self.description,
            stiff=self.stiff,
            equations=self.equations,
            data=self.data,
            exact=self.exact,
            param_info={
                k: dict(range=(i.lo, i.hi), log=i.log, unit=i.unit, description=i.description)
                for k, i in self.param_info.items()
            },
        )
        fields.update(changes)
        return System(**fields)

    def __repr__(self) -> str:
        params = (
            ", ".join(f"{k}={float(v):g}" for k, v in self.params.items() if np.ndim(v) == 0)
            if isinstance(self.params, Mapping)
            else type(self.params).__name__
        )
        return (
            f"System({self.name!r}, states={self.states}, params={{{params}}}, "
            f"t_span={self.t_span})"
        )


def system(states: Sequence[str] | int, **kwargs: Any) -> Callable[[VectorField], System]:
    """Decorator form of `System`.

    >>> @system(states=("x", "v"), params=dict(k=1.0), y0=[1.0, 0.0])
    ... def spring(t, y, p):
    ...     return jnp.stack([y[1], -p["k"] * y[0]])
    """

    def wrap(f: VectorField) -> System:
        return System(f, states=states, **kwargs)

    return wrap
