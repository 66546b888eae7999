"""`solve`: integrate a System with diffrax, one compiled program per static configuration.

Static (changing it compiles once, then hits the cache): the system's vector field, the solver,
the gradient method, the number and kind of save points, fixed or adaptive steps, max_steps.
Traced (changing it never compiles): parameter values, y0, t_span, rtol, atol, save times, dt.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _context, _lab, _registry
from ._errors import InputError, MethodError, OdelabError, SolveError
from ._solution import Solution
from ._solvers import DEFAULT_EXPLICIT, DEFAULT_STIFF, solver_spec
from ._system import System, _float_array, check_t_span
from .methods import GradientMethod, method_object
from .methods._inner import tangent_field

DEFAULT_RTOL = 1e-6
DEFAULT_ATOL = 1e-8
DEFAULT_SAVE_POINTS = 201
DEFAULT_MAX_STEPS = 16384
STIFFNESS_THRESHOLD = 1e3  # max |Re λ| × (t1 − t0) above which a problem counts as stiff


# --------------------------------------------------------------------------------------------
# static configuration
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SolveConfig:
    """Everything about a solve that shapes the compiled program (hashable)."""

    f: Any
    states: tuple[str, ...]
    system_name: str
    solver: str
    method: GradientMethod
    save: str  # "count" | "times" | "dense"
    n_save: int
    fixed_steps: bool
    max_steps: int
    solver_reason: str = dataclasses.field(default="", compare=False)

    def __hash__(self) -> int:  # looked up on every solve: computed once
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(tuple(getattr(self, f.name) for f in dataclasses.fields(self)
                                if f.compare))
            object.__setattr__(self, "_hash", cached)
        return cached


class _Counter:
    """Counts traces of the solve program: one trace is one compilation."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.traces = 0
        self.compile_seconds = 0.0

    def bump(self) -> None:
        with self.lock:
            self.traces += 1


COMPILATIONS = _Counter()


def trace_count() -> int:
    """How many times odelab has traced a solve program in this process."""
    return COMPILATIONS.traces


# --------------------------------------------------------------------------------------------
# the compiled program
# --------------------------------------------------------------------------------------------
def _vector_field(f):
    return lambda t, y, args: f(t, y, args)


def _run(config: SolveConfig, inputs: dict[str, Any], adjoint: diffrax.AbstractAdjoint,
         tangents: tuple[Any, Any] | None = None):
    """The diffrax solve of `config` on `inputs`, as a Solution.

    tangents=(ty0, tp): integrate the forward sensitivities along (ty0, tp) with the state, the
    error norm covering both (`tangent_field`); returns (Solution, (sensitivities at the save
    times, at the end)).
    """
    spec = solver_spec(config.solver)
    solver = spec.make()
    if config.fixed_steps:
        controller = diffrax.ConstantStepSize()
        dt0 = inputs["dt"]
    else:
        controller = diffrax.PIDController(rtol=inputs["rtol"], atol=inputs["atol"])
        dt0 = None
    # The final state (where a failed solve stopped) comes from a second save; diffrax's
    # BacksolveAdjoint takes only one, so there the last finite saved point stands in for it.
    one_save = isinstance(adjoint, diffrax.BacksolveAdjoint)
    if one_save:
        saveat = diffrax.SaveAt(ts=inputs["ts"], dense=config.save == "dense")
    else:
        subs = [diffrax.SubSaveAt(ts=inputs["ts"]), diffrax.SubSaveAt(t1=True)]
        saveat = diffrax.SaveAt(subs=subs, dense=config.save == "dense")
    field, y0, args = _vector_field(config.f), inputs["y0"], inputs["params"]
    if tangents is not None:
        pdiff, prest = eqx.partition(args, eqx.is_inexact_array)
        field, y0, args = tangent_field(config.f, prest), (y0, tangents[0]), (pdiff, tangents[1])
    out = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        solver,
        t0=inputs["t0"],
        t1=inputs["t1"],
        dt0=dt0,
        y0=y0,
        args=args,
        saveat=saveat,
        stepsize_controller=controller,
        adjoint=adjoint,
        max_steps=config.max_steps,
        throw=False,
    )
    if one_save:
        ts, ys = out.ts, out.ys
        last = jnp.max(jnp.where(jnp.all(jnp.isfinite(ys), axis=1), jnp.arange(ts.shape[0]), 0))
        t_end, y_end = ts[last][None], ys[last][None]
    else:
        (ts, t_end), (ys, y_end) = out.ts, out.ys
    if tangents is not None:
        (ys, s_ys), (y_end, s_end) = ys, y_end
    dense = None
    if config.save == "dense":
        dense = eqx.tree_at(lambda s: (s.ts, s.ys), out, (None, None), is_leaf=lambda x: x is None)
    sol = Solution(
        ts=ts,
        ys=ys,
        t_reached=t_end[-1],
        y_reached=y_end[-1],
        result=out.result._value,
        num_steps=out.stats["num_steps"],
        num_accepted=out.stats["num_accepted_steps"],
        num_rejected=out.stats["num_rejected_steps"],
        dense=dense,
        states=config.states,
        system_name=config.system_name,
        solver=config.solver,
        method=config.method.name,
        max_steps=config.max_steps,
        stages=_stages(solver),
        solver_reason=config.solver_reason,
    )
    return sol if tangents is None else (sol, (s_ys, s_end[-1]))


def _stages(solver: diffrax.AbstractSolver) -> int:
    tableau = getattr(solver, "tableau", None)
    c = getattr(tableau, "c", None)
    return len(c) + 1 if c is not None else getattr(solver, "stages", 1)


def _program(config: SolveConfig, inputs: dict[str, Any]) -> Solution:
    COMPILATIONS.bump()
    if inputs["ts"] is None:  # evenly spaced save points, computed inside the program
        inputs = {**inputs, "ts": jnp.linspace(inputs["t0"], inputs["t1"], config.n_save)}
    return _integrate(config, inputs)


_filtered_program = eqx.filter_jit(_program)
_PROGRAMS: dict[SolveConfig, Callable] = {}


def _compiled(config: SolveConfig, inputs: dict[str, Any]) -> Solution:
    """The solve program for `config`, compiled once and called with `inputs`.

    When every input is an array (parameters as numbers or arrays: the usual case) this is a
    plain `jax.jit` per configuration, whose dispatch costs microseconds; parameters holding
    other objects (an equinox network's activation function, say) go through equinox's
    filter_jit, which sorts arrays from static values on every call.
    """
    if all(isinstance(x, (np.ndarray, jax.Array)) for x in jax.tree_util.tree_leaves(inputs)):
        program = _PROGRAMS.get(config)
        if program is None:
            program = _PROGRAMS[config] = jax.jit(functools.partial(_program, config))
        return program(inputs)
    return _filtered_program(config, inputs)


def _integrate(config: SolveConfig, inputs: dict[str, Any]) -> Solution:
    size = int(np.prod(np.shape(inputs["y0"])))
    extra = {"config": config} if getattr(config.method, "uses_config", False) else {}
    return config.method.integrate(
        functools.partial(_run, config),
        inputs,
        max_steps=config.max_steps,
        state_size=size,
        **extra,
    )


# --------------------------------------------------------------------------------------------
# resolving the user's arguments
# --------------------------------------------------------------------------------------------
def _dtype():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _scalar(argument: str, value: Any) -> Any:
    """A checked scalar: a Python float, or the tracer as it is inside a transform."""
    if isinstance(value, jax.core.Tracer):
        if value.shape != ():
            raise InputError(f"`{argument}` must be a single number; got shape {value.shape}.")
        return value
    if type(value) in (float, int):  # the common case, fast
        return float(value)
    if isinstance(value, bool):
        raise InputError(f"`{argument}` is a bool; give a number.")
    arr = _float_array(argument, value)
    if arr.ndim != 0:
        raise InputError(f"`{argument}` must be a single number; got shape {arr.shape}.")
    return float(arr)


def _traced(value: Any) -> Any:
    """A float as a (non-weak) array input, so new values reuse the compiled program.

    Concrete values become numpy arrays: handing those to the compiled program costs no JAX
    dispatch, which keeps a solve's Python overhead small.
    """
    if isinstance(value, jax.core.Tracer):
        return jnp.asarray(value, dtype=_dtype())
    return np.asarray(value, dtype=_dtype())


def _check_tolerance(argument: str, value: Any) -> Any:
    """A positive tolerance (Python float, or a tracer passed through unchecked)."""
    v = _scalar(argument, value)
    if isinstance(v, jax.core.Tracer):
        return v
    if not np.isfinite(v) or v <= 0:
        raise InputError(
            f"`{argument}={value!r}` must be a positive number, e.g. {argument}="
            f"{DEFAULT_RTOL if argument == 'rtol' else DEFAULT_ATOL:g}."
        )
    if argument == "rtol" and v >= 1:
        raise InputError(
            f"`rtol={value!r}` asks for no accuracy at all; relative tolerances are small "
            "numbers such as 1e-6."
        )
    if argument == "rtol" and v < 1e-15 and jax.config.jax_enable_x64:
        raise InputError(
            f"`rtol={value!r}` is below float64 resolution; the solver cannot meet it. "
            "Use 1e-14 or larger."
        )
    return v


def _as_params(params: Any, host: bool = False) -> Any:
    """Parameters with Python and numpy scalars turned into float arrays (traced, not static).

    host=True makes them numpy arrays, for parameters going straight into a compiled program:
    a jnp.asarray per scalar would dispatch a JAX operation each (about 0.1 ms apiece).
    """
    to_array = np.asarray if host else jnp.asarray

    def leaf(x):
        if isinstance(x, (float, int, np.floating, np.integer)) and not isinstance(x, bool):
            return to_array(x, dtype=_dtype())
        if isinstance(x, np.ndarray) and x.dtype.kind in "fiu":
            return to_array(x, dtype=_dtype())
        if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
            # weak-typed, integer or other-precision arrays would each compile a new program
            if jnp.issubdtype(x.dtype, jnp.integer) or x.weak_type:  # scalars, usually
                return to_array(np.asarray(x, dtype=_dtype()))
            if jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != _dtype():
                return x.astype(_dtype())
        return x

    return jax.tree_util.tree_map(leaf, params)


def _check_params_finite(params: Any) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if isinstance(leaf, jax.core.Tracer) or not hasattr(leaf, "dtype"):
            continue
        if jnp.issubdtype(leaf.dtype, jnp.floating) and not np.all(np.isfinite(np.asarray(leaf))):
            where = jax.tree_util.keystr(path)
            raise InputError(
                f"`params{where}` contains a non-finite value (NaN or inf). Give finite numbers."
            )


def stiffness_estimate(system: System, y0: Any, params: Any, t_span: tuple[Any, Any]) -> float:
    """max |Re λ(∂f/∂y)| × (t1 − t0) at the initial state: large values mean stiff."""
    try:
        # runs eagerly even when called while a transform traces the caller
        with jax.ensure_compile_time_eval():
            jac = _jacobian_at(system.f, _traced(t_span[0]), jnp.asarray(y0), params)
            eig = np.linalg.eigvals(np.asarray(jac))
    except Exception:  # an estimate only; an odd field must not break solve
        return 0.0
    return float(np.max(np.abs(eig.real)) * (float(t_span[1]) - float(t_span[0])))


@eqx.filter_jit
def _jacobian_at(f, t, y, p):
    return jax.jacfwd(lambda yy: f(t, yy, p))(y)


def _concrete(*trees: Any) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(trees))


PROBE_STEPS = 400  # an explicit probe that cannot cover PROBE_FRACTION of t_span in these is stiff
PROBE_FRACTION = 0.05


def _probe(system: System, y0: Any, params: Any, t_span: tuple[float, float]) -> Solution:
    """A short explicit solve over the start of t_span, to see how the step sizes behave."""
    from .methods import METHODS

    t0, t1 = float(t_span[0]), float(t_span[1])
    t_probe = t0 + PROBE_FRACTION * (t1 - t0)
    config = SolveConfig(
        f=system.f,
        states=system.states,
        system_name=system.name,
        solver=DEFAULT_EXPLICIT,
        method=METHODS["checkpoint"](),
        save="count",
        n_save=2,
        fixed_steps=False,
        max_steps=PROBE_STEPS,
    )
    # eager even when the caller is being traced: the choice of solver is static
    with jax.ensure_compile_time_eval():
        inputs = dict(
            y0=jnp.asarray(np.asarray(y0), dtype=_dtype()),
            params=_as_params(params),
            t0=_traced(t0),
            t1=_traced(t_probe),
            rtol=_traced(DEFAULT_RTOL),
            atol=_traced(DEFAULT_ATOL),
            ts=None,
            dt=_traced(0.0),
        )
        return jax.block_until_ready(_compiled(config, inputs))


def choose_solver(system: System, y0: Any, params: Any, t_span: tuple[Any, Any]) -> tuple[str, str]:
    """`solver="auto"`: (name, reason).

    Stiff when the system is marked so; otherwise when the Jacobian's spectrum at the initial
    state says so, or when a short explicit probe over the first 5% of t_span runs out of steps
    or ends where the spectrum says so. The choice is cached per system and values.
    """
    if system.stiff is not None:
        name = DEFAULT_STIFF if system.stiff else DEFAULT_EXPLICIT
        return name, f"system {system.name!r} is marked stiff={system.stiff}"
    if not _concrete(y0, params, t_span):  # inside a transform: decide at the defaults
        y0, params, t_span = system.y0, system.params, system.t_span
    key = _value_key(y0, params, t_span)
    cache = system.__dict__.setdefault("_auto_solver_cache", {})
    if key in cache:
        return cache[key]
    with jax.ensure_compile_time_eval():  # eager even while the caller is being traced
        choice = _decide_stiffness(system, y0, params, t_span)
    if len(cache) > 256:
        cache.clear()
    cache[key] = choice
    return choice


def _decide_stiffness(system: System, y0: Any, params: Any, t_span: tuple[Any, Any]):
    s = stiffness_estimate(system, y0, params, t_span)
    if s > STIFFNESS_THRESHOLD:
        choice = (
            DEFAULT_STIFF,
            (f"stiff: max|Re λ|·(t1−t0) = {s:.3g} > {STIFFNESS_THRESHOLD:g} at the initial state"),
        )
    else:
        probe = _probe(system, y0, params, t_span)
        t_probe = t_span[0] + PROBE_FRACTION * (t_span[1] - t_span[0])
        s_end = stiffness_estimate(system, probe.y_reached, params, (t_probe, t_span[1]))
        if not probe.ok:
            choice = (
                DEFAULT_STIFF,
                (
                    f"stiff: an explicit probe ({DEFAULT_EXPLICIT}) took {PROBE_STEPS} steps "
                    "without "
                    f"covering the first {PROBE_FRACTION:.0%} of t_span"
                ),
            )
        elif s_end > STIFFNESS_THRESHOLD:
            choice = (
                DEFAULT_STIFF,
                (
                    f"stiff: max|Re λ|·(t1−t) = {s_end:.3g} > {STIFFNESS_THRESHOLD:g} after "
                    f"{PROBE_FRACTION:.0%} of t_span"
                ),
            )
        else:
            choice = (
                DEFAULT_EXPLICIT,
                (
                    f"non-stiff: max|Re λ|·(t1−t0) = {max(s, s_end):.3g} and an explicit probe "
                    f"took {int(probe.num_steps)} steps over the first {PROBE_FRACTION:.0%}"
                ),
            )
    return choice


def _value_key(*trees: Any) -> tuple:
    leaves = jax.tree_util.tree_leaves(trees)
    return tuple(
        np.asarray(x).tobytes() if hasattr(x, "shape") or isinstance(x, (float, int)) else id(x)
        for x in leaves
    )


def choose_method(request: tuple | None, stiff: bool = False) -> GradientMethod:
    """`method="auto"`: the method that serves the derivative the surrounding call asks for.

    No derivative: `checkpoint` (its forward solve is the plain one). Forward mode (few
    parameters, ol.jvp, forward-over-forward Hessians): `forward`, the cheapest measured,
    except with a stiff (implicit) solver, where it is `forward-sensitivity`: its step control
    covers the tangents, while `forward` differentiates steps chosen for the state alone.
    Reverse first order: `checkpoint` (exact, never re-integrates the state backward). Reverse
    over forward (HVPs): `checkpoint` with its sensitivity rule. A gradient of a gradient
    (nested calls, reverse over reverse): `direct`, the one route that composes so.
    """
    from .methods import METHODS
    from .methods._over_forward import wants_route

    if request is None:
        return METHODS["checkpoint"]()
    direction, order = request[0], request[1]
    if direction == "forward":
        return METHODS["forward-sensitivity" if stiff else "forward"]()
    if order >= 2 and not wants_route(request):
        return METHODS["direct"]()
    return METHODS["checkpoint"]()


def _save_times(saveat: Any, t0: Any, t1: Any) -> tuple[str, int, jax.Array]:
    if saveat is None:
        saveat = DEFAULT_SAVE_POINTS
    if isinstance(saveat, str):
        if saveat != "dense":
            raise InputError(
                f"`saveat={saveat!r}` is not known. Give a number of points (saveat=200), an array "
                "of times, or saveat='dense' for an interpolating solution."
            )
        n = DEFAULT_SAVE_POINTS
        return "dense", n, None
    if isinstance(saveat, (bool, float)) or (
        isinstance(saveat, (int, np.integer)) and not isinstance(saveat, bool)
    ):
        if isinstance(saveat, bool) or not float(saveat).is_integer():
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
        return "times", saveat.shape[0], saveat.astype(_dtype())
    ts = _float_array("saveat", saveat)
    if ts.ndim != 1 or ts.shape[0] == 0:
        raise InputError(f"`saveat` times must be a non-empty 1-D array; got shape {ts.shape}.")
    if np.any(np.diff(ts) < 0):
        raise InputError("`saveat` times must be sorted in increasing order.")
    if _concrete(t0, t1) and (ts[0] < t0 or ts[-1] > t1):
        raise InputError(
            f"`saveat` times run from {ts[0]:g} to {ts[-1]:g}, outside t_span=({t0:g}, {t1:g}). "
            "Keep save times inside the time span."
        )
    return "times", ts.shape[0], jnp.asarray(ts, dtype=_dtype())


def _check_max_steps(max_steps: Any) -> int:
    if max_steps is None:
        return DEFAULT_MAX_STEPS
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise InputError(
            f"`max_steps={max_steps!r}` must be a positive whole number, e.g. max_steps=100000."
        )
    return int(max_steps)


# --------------------------------------------------------------------------------------------
# the public function
# --------------------------------------------------------------------------------------------
def solve(
    system: System,
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
) -> Solution:
    """Integrate `system` from `t_span[0]` to `t_span[1]`.

    Anything left as None comes from the enclosing derivative or check call (`ol.gradient(...,
    method=..., rtol=...)`), else from the system (y0, params, t_span), else from odelab's
    defaults: solver "tsit5", rtol 1e-6, atol 1e-8, method "auto", 201 save points.

    saveat: a number of evenly spaced points, an array of times, or "dense" (keeps the
      interpolant: `sol.evaluate(t)`).
    dt: a fixed step size (no error control); without it steps are adaptive (PID controller).
    throw: raise `SolveError` when the solve fails (outside transforms); with False, check
      `sol.ok` and `sol.message` instead.

        >>> sol = ol.solve(ol.gallery.lorenz(), saveat=1000, rtol=1e-8)
        >>> sol["x"], sol.stats
    """
    if not isinstance(system, System):
        if hasattr(system, "solve_delay"):  # a DelaySystem solves itself by the method of steps
            return system.solve_delay(
                y0=y0,
                params=params,
                t_span=t_span,
                saveat=saveat,
                solver=solver,
                rtol=rtol,
                atol=atol,
                max_steps=max_steps,
                method=method,
                dt=dt,
                throw=throw,
            )
        raise InputError(
            f"`system` must be an odelab System (ol.System(...), @ol.system, "
            f"ol.System.from_equations or ol.gallery.*); got {type(system).__name__}."
        )
    defaults = _lab_defaults_under(_context.current())
    y0 = system.y0 if y0 is None else system.check_y0(y0)
    params = _as_params(system.merge_params(params), host=True)
    if not isinstance(system.params, Mapping):  # named values were checked as they were merged
        _check_params_finite(params)
    t0, t1 = check_t_span(system.t_span if t_span is None else t_span)

    solver = solver if solver is not None else defaults.solver
    solver = solver if solver is not None else "auto"
    reason = ""
    if solver == "auto":
        solver, reason = choose_solver(system, y0, params, (t0, t1))
    spec = solver_spec(solver)

    method = method if method is not None else defaults.method
    method = method_object(method if method is not None else "auto")
    if method == "auto":
        method = choose_method(defaults.derivative, stiff=spec.stiff)
    method = method.for_derivative(defaults.derivative)

    fixed, dt, rtol, atol = step_settings(spec, dt, rtol, atol, defaults)
    n_max = _check_max_steps(max_steps)
    if fixed and _concrete(dt, t0, t1):
        needed = int(np.ceil((t1 - t0) / dt))
        if needed > n_max:
            raise InputError(
                f"`dt={dt:g}` needs {needed} steps over t_span=({t0:g}, {t1:g}), more than "
                f"max_steps={n_max}. Raise max_steps or use a larger dt."
            )
    t0a, t1a = _traced(t0), _traced(t1)
    save, n_save, ts = _save_times(saveat, t0, t1)

    config = SolveConfig(
        f=system.f,
        states=system.states,
        system_name=system.name,
        solver=spec.name,
        method=method,
        save=save,
        n_save=n_save,
        fixed_steps=fixed,
        max_steps=n_max,
        solver_reason=reason,
    )
    inputs = dict(
        y0=y0 if isinstance(y0, jax.core.Tracer) else np.asarray(y0, dtype=_dtype()),
        params=params,
        t0=t0a,
        t1=t1a,
        rtol=_traced(rtol),
        atol=_traced(atol),
        ts=ts,
        dt=_traced(dt if fixed else 0.0),
    )
    traced = not _concrete(inputs)
    start = time.perf_counter()
    before = COMPILATIONS.traces
    new_program = not traced and config not in _SEEN_CONFIGS
    if new_program:
        _lab.set_compiling(True)  # the status bar in JupyterLab shows it
    try:
        sol = _compiled(config, inputs)
    except OdelabError:
        raise
    except Exception as err:
        raise _translate(err, config) from err
    finally:
        if new_program:
            _lab.set_compiling(False)
    if traced:
        _context.record(sol.result, sol.t_reached)
        return sol
    if new_program:
        _SEEN_CONFIGS.add(config)
    ok = sol.ok  # reads the status on the host, so the solve has finished
    elapsed = time.perf_counter() - start
    compiled = COMPILATIONS.traces > before
    if compiled:
        COMPILATIONS.compile_seconds += elapsed
    _registry.update(
        system,
        last_solver=spec.name,
        last_method=method.name,
        **({"compile_time_s": elapsed} if compiled else {"run_time_s": elapsed}),
        n_compiles=COMPILATIONS.traces,
    )
    if not ok:
        sol = dataclasses.replace(
            sol, failure_hint=explain_failure(system, sol, params, rtol, (t0, t1))
        )
    _context.notify_solve(system, y0, params, (t0, t1), spec.name, sol)
    if not ok and throw:
        raise SolveError(sol.failure_hint)
    return sol


def step_settings(spec, dt: Any, rtol: Any, atol: Any, defaults: _context.SolveDefaults):
    """(fixed, dt, rtol, atol) checked: explicit values, else the context's, else odelab's."""
    fixed = dt is not None
    if not fixed and not spec.adaptive:
        raise InputError(
            f"`solver={spec.name!r}` has no error estimate, so it cannot choose its own steps. "
            "Give a fixed step with dt=..., or use an adaptive solver such as solver='tsit5'."
        )
    if fixed:
        dt = _scalar("dt", dt)
        if not isinstance(dt, jax.core.Tracer) and not dt > 0:
            raise InputError(f"`dt={dt!r}` must be a positive step size.")
    rtol = _check_tolerance(
        "rtol",
        rtol
        if rtol is not None
        else (defaults.rtol if defaults.rtol is not None else DEFAULT_RTOL),
    )
    atol = _check_tolerance(
        "atol",
        atol
        if atol is not None
        else (defaults.atol if defaults.atol is not None else DEFAULT_ATOL),
    )
    return fixed, dt, rtol, atol


_SEEN_CONFIGS: set = set()


def _lab_defaults_under(defaults: _context.SolveDefaults) -> _context.SolveDefaults:
    """The JupyterLab settings (solver, method, rtol, atol) fill what the context leaves open."""
    lab = _lab.lab_defaults()
    if not lab:
        return defaults
    return dataclasses.replace(
        defaults,
        **{
            k: lab[k]
            for k in ("solver", "method", "rtol", "atol")
            if k in lab and getattr(defaults, k) is None
        },
    )


def _translate(err: Exception, config: SolveConfig) -> Exception:
    """Turn a raw JAX error from combining transforms into an OdelabError with the way out."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else ""  # the first line: later ones may quote whole programs
    name = config.method.name
    if "forward-mode autodiff (jvp) to a custom_vjp" in text or "Unexpected tangent" in text:
        return MethodError(
            f"`method={name!r}` cannot be differentiated in forward mode (jax.jvp, jax.jacfwd, "
            "jax.hessian, or a gradient of a gradient). Use method='direct' (any transform) or "
            "method='forward' (forward mode), or call ol.jvp / ol.hessian which pick one for you."
        )
    if "Reverse-mode differentiation does not work for lax.while_loop" in text:
        return MethodError(
            f"`method={name!r}` cannot be differentiated in reverse mode (jax.grad). Use "
            "method='checkpoint' for gradients, or call ol.gradient which picks one for you."
        )
    if isinstance(err, (TypeError, ValueError)) and "vector" not in text:
        return OdelabError(
            f"Solving {config.system_name!r} failed while tracing: {type(err).__name__}: "
            f"{text.splitlines()[0] if text else ''}"
        )
    return err


def explain_failure(
    system: System, sol: Solution, params: Any, rtol: Any, t_span: tuple[float, float]
) -> str:
    """A plain-words account of why a solve stopped early, with what to try."""
    from ._solution import result_name

    t = float(sol.t_reached)
    y = np.asarray(sol.y_reached)
    t0, t1 = t_span
    code = int(sol.result)
    where = f"at t={t:.6g} (of {t0:g}..{t1:g})"
    if not np.all(np.isfinite(y)) or np.max(np.abs(y)) > 1e100:
        return (
            f"The solution of {system.name!r} blew up {where}: the state became "
            f"{'non-finite' if not np.all(np.isfinite(y)) else 'huge'}. Check the parameter "
            "values and the vector field (a finite-time singularity, a sign error or a division "
            "by zero), or shorten t_span."
        )
    if code == int(diffrax.RESULTS.max_steps_reached._value):
        stiff = stiffness_estimate(system, y, params, (t, t1))
        spec = solver_spec(sol.solver)
        msg = f"`solver={sol.solver!r}` hit max_steps={sol.max_steps} {where}."
        if stiff > STIFFNESS_THRESHOLD and not spec.stiff:
            msg += (
                f" The system looks stiff there (max|Re λ|·(t1−t) = {stiff:.2g}). Consider "
                f"`solver={DEFAULT_STIFF!r}` or solver='auto'."
            )
        else:
            msg += (
                f" Raise max_steps (e.g. max_steps={sol.max_steps * 4}) or loosen rtol "
                f"(now {float(rtol):g})."
            )
        return msg
    if code == int(diffrax.RESULTS.dt_min_reached._value):
        return (
            f"The step size of `solver={sol.solver!r}` collapsed {where}. The solution may have a "
            "singularity there; check the parameters, or try a stiff solver."
        )
    return f"The solve of {system.name!r} stopped {where}: {result_name(code)}."
