"""Why a solve failed, in plain words with what to try; and refusals of transforms up front.

A solve reports failure as a result code on its Solution (diffrax's codes, and odelab's own for
delay equations); `explain` turns the code and the state where it stopped into a message that
names the cause (a non-finite vector field, stiffness, a blow-up, too few steps) and the way out.

`check_transforms` reads which JAX transforms are differentiating a solve from the tracers of
its inputs (reverse mode: `jax.grad`/`vjp`; forward mode: `jax.jvp`/`jacfwd`) and refuses, before
anything is traced, a method that cannot be differentiated that way.
"""

from __future__ import annotations

from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import MethodError
from .auto import STIFFNESS_THRESHOLD, stiffness_estimate
from .gradient_method import METHODS, GradientMethod
from .solution import GRID_TOO_SHORT, Solution, result_name
from .solvers import DEFAULT_STIFF, solver_spec

MAX_STEPS_REACHED = int(diffrax.RESULTS.max_steps_reached._value)
DT_MIN_REACHED = int(diffrax.RESULTS.dt_min_reached._value)


# --------------------------------------------------------------------------------------------
# explaining a failed solve
# --------------------------------------------------------------------------------------------
def field_not_finite(f: Any, t: float, y: np.ndarray, params: Any) -> str | None:
    """A description of where f(t, y, p) is NaN or inf, or None when it is finite there."""
    try:
        with jax.ensure_compile_time_eval():
            dy = np.asarray(f(jnp.asarray(t), jnp.asarray(y), params))
    except Exception:  # an explanation must not fail
        return None
    if np.all(np.isfinite(dy)):
        return None
    bad = int(np.argmax(~np.isfinite(dy)))
    return f"component {bad} of dy/dt is {dy.ravel()[bad]}"


def explain(system: Any, sol: Solution, params: Any, rtol: Any, t_span: tuple[float, float],
            *, ode_view: Any = None) -> str:
    """A plain-words account of why a solve stopped early, with what to try.

    `ode_view`: the system as an ODE f(t, y, p) (a DelaySystem's field with its history fed
    in), used to test the vector field and estimate stiffness where the solve stopped.
    """
    ode = ode_view if ode_view is not None else system
    t = float(sol.t_reached)
    y = np.asarray(sol.y_reached)
    t0, t1 = t_span
    code = int(sol.result)
    where = f"at t={t:.6g} (of {t0:g}..{t1:g})"
    states = getattr(system, "states", ())
    if code == GRID_TOO_SHORT:
        return result_name(code)
    if np.all(np.isfinite(y)):
        bad = field_not_finite(ode.f, t, y, params)
        if bad is not None:
            state = ", ".join(f"{n}={v:.6g}" for n, v in zip(states, y))
            first = " right at the start" if t == t0 else ""
            return (
                f"The vector field of {system.name!r} is not finite{first} {where}, at the state "
                f"{state or y}: {bad}. Look for a square root or logarithm of a negative number, "
                "a division by zero or an overflowing power in f, or change y0 and the "
                "parameters so the field is defined there."
            )
    if not np.all(np.isfinite(y)) or np.max(np.abs(y)) > 1e100:
        return (
            f"The solution of {system.name!r} blew up {where}: the state became "
            f"{'non-finite' if not np.all(np.isfinite(y)) else 'huge'}. Check the parameter "
            "values and the vector field (a finite-time singularity, a sign error or a division "
            "by zero), or shorten t_span."
        )
    if code == MAX_STEPS_REACHED:
        stiff = stiffness_estimate(ode.f, y, params, (t, t1))
        spec = solver_spec(sol.solver)
        per = " (max_steps counts the steps of each interval between breakpoints)" if (
            ode_view is not None) else ""
        msg = f"`solver={sol.solver!r}` hit max_steps={sol.max_steps}{per} {where}."
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
    if code == DT_MIN_REACHED:
        return (
            f"The step size of `solver={sol.solver!r}` collapsed {where}. The solution may have a "
            "singularity there; check the parameters, or try a stiff solver."
        )
    return f"The solve of {system.name!r} stopped {where}: {result_name(code)}."


# --------------------------------------------------------------------------------------------
# transforms a method cannot take
# --------------------------------------------------------------------------------------------
try:  # JAX's tracer classes for reverse (linearize) and forward (jvp) differentiation
    from jax._src.interpreters.ad import JVPTracer as _JVPTracer
    from jax._src.interpreters.ad import LinearizeTracer as _LinearizeTracer
except ImportError:  # another JAX: no refusal up front (the method may still fail as it runs)
    _JVPTracer = _LinearizeTracer = None


def _inner(tracer: Any) -> Any:
    for name in ("primal", "val"):
        if hasattr(tracer, name):
            return getattr(tracer, name)
    return None


def ad_chain(tree: Any) -> tuple[str, ...]:
    """The differentiation transforms tracing `tree`, innermost first ("reverse"/"forward").

    E.g. ("reverse",) under jax.grad, ("forward",) under jax.jvp, ("reverse", "forward") under
    jax.hessian (forward over reverse), ("forward", "reverse") for a gradient of a jvp.
    """
    if _JVPTracer is None:
        return ()
    longest: tuple[str, ...] = ()
    for leaf in jax.tree_util.tree_leaves(tree):
        chain = []
        while isinstance(leaf, jax.core.Tracer):
            if isinstance(leaf, _LinearizeTracer):
                chain.append("reverse")
            elif isinstance(leaf, _JVPTracer):
                chain.append("forward")
            leaf = _inner(leaf)
        if len(chain) > len(longest):
            longest = tuple(chain)
    return longest


_WHAT = {
    "forward": "forward mode (jax.jvp, jax.jacfwd, jax.hessian)",
    "reverse": "reverse mode (jax.grad, jax.vjp)",
    "nested": "a gradient of a gradient (reverse over reverse)",
}


_CAN = {
    "forward": lambda c: c.forward,
    "reverse": lambda c: c.reverse,
    "nested": lambda c: c.nested,
}


def able_methods(refused: str, kind: str, but: str) -> list[str]:
    """The methods (other than `but`) that apply to systems of `kind` and can be differentiated
    the way `refused` names; finite differences never are (they differentiate nothing)."""
    return [name for name, cls in METHODS.items()
            if kind in cls.applies_to and name not in (but, "finite-difference")
            and _CAN[refused](cls.capabilities)]


def check_transforms(method: GradientMethod, chain: tuple[str, ...], kind: str = "ode",
                     derivative: tuple | None = None) -> None:
    """MethodError when `method` cannot be differentiated by the transforms in `chain` (the
    methods suggested instead are those that apply to a system of `kind`). `derivative`: the
    route of the odelab derivative call around the solve, if any (its words differ)."""
    refused = method.refuses(chain)
    if refused is None:
        return
    names = able_methods(refused, kind, method.name)
    able = " or ".join(f"method={n!r}" for n in names) if names else "another method"
    what = {"ode": "this solve", "delay": "this delay-equation solve"}.get(kind, "this solve")
    if derivative is not None and derivative[1] >= 2:
        raise MethodError(
            f"`method={method.name!r}` has no second-order route for {what}: the second "
            f"derivative asked for needs {_WHAT[refused]} through it. Use {able} (or "
            "method='auto', which picks one that can).")
    tail = (f"Use {able}." if derivative is not None else
            f"Use {able}, or call ol.gradient / ol.jvp / ol.hvp / ol.hessian, which choose a "
            "method that can.")
    raise MethodError(
        f"`method={method.name!r}` cannot be differentiated in {_WHAT[refused]}, which is what "
        f"is being asked of {what}. {tail}"
    )
