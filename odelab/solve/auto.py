"""Everything `"auto"` means, in one place: which solver, which derivative route, which method.

* `choose_solver` — `solver="auto"`: stiff or not, from the Jacobian's spectrum at the start and
  a short explicit probe solve; says why.
* `choose_route` — what a derivative call (`ol.gradient(method="auto")`, ...) asks of the solves
  inside the user's function: forward or reverse mode, first or second order, and whether
  second order goes reverse over forward sensitivities.
* `choose_method` — the gradient method a solve takes for the route in force (`method="auto"`).
* `fit_to_budget` — that method, or a cheaper plan of it, within the memory budget; says why.

The thresholds were measured in benchmarks/bench_gradients.py.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._inputs import as_params, float_dtype, is_concrete, size_text, traced
from . import memory, ode
from .gradient_method import (
    REQUEST_ORDER,
    REVERSE_OVER_FORWARD,
    GradientMethod,
    method_object,
    wants_reverse_over_forward,
)
from .solution import Solution
from .solvers import DEFAULT_EXPLICIT, DEFAULT_STIFF

STIFFNESS_THRESHOLD = 1e3  # max |Re λ| × (t1 − t0) above which a problem counts as stiff
PROBE_STEPS = 400  # an explicit probe that cannot cover PROBE_FRACTION of t_span in these is stiff
PROBE_FRACTION = 0.05
PROBE_RTOL, PROBE_ATOL = 1e-6, 1e-8
FEW_PARAMETERS = 3  # up to this many, forward mode beats an adjoint for a gradient
FEW_PARAMETERS_FOR_HESSIAN = 20  # up to this many, forward over forward beats n HVPs
# when no plan fits the memory budget, recomputing the forward steps more often than this costs
# more time than the memory saved is worth (each sweep costs about 3.5 solves, measured)
MAX_RECOMPUTATION_SWEEPS = 8


# --------------------------------------------------------------------------------------------
# solver="auto"
# --------------------------------------------------------------------------------------------
def stiffness_estimate(f: Any, y0: Any, params: Any, t_span: tuple[Any, Any]) -> float:
    """max |Re λ(∂f/∂y)| × (t1 − t0) at (t0, y0) for the field f(t, y, p): large means stiff."""
    try:
        # runs eagerly even when called while a transform traces the caller
        with jax.ensure_compile_time_eval():
            jac = _jacobian_at(f, traced(t_span[0]), jnp.asarray(y0), params)
            eig = np.linalg.eigvals(np.asarray(jac))
    except Exception:  # an estimate only; an odd field must not break solve
        return 0.0
    return float(np.max(np.abs(eig.real)) * (float(t_span[1]) - float(t_span[0])))


@eqx.filter_jit
def _jacobian_at(f, t, y, p):
    return jax.jacfwd(lambda yy: f(t, yy, p))(y)


def _probe(system: Any, y0: Any, params: Any, t_span: tuple[float, float]) -> Solution:
    """A short explicit solve over the start of t_span, to see how the step sizes behave."""
    t0, t1 = float(t_span[0]), float(t_span[1])
    t_probe = t0 + PROBE_FRACTION * (t1 - t0)
    config = ode.SolveConfig(
        f=system.f,
        states=system.states,
        system_name=system.name,
        solver=DEFAULT_EXPLICIT,
        method=method_object("checkpoint"),
        save="count",
        n_save=2,
        fixed_steps=False,
        max_steps=PROBE_STEPS,
    )
    # eager even when the caller is being traced: the choice of solver is static
    with jax.ensure_compile_time_eval():
        inputs = dict(
            y0=jnp.asarray(np.asarray(y0), dtype=float_dtype()),
            params=as_params(params),
            t0=traced(t0),
            t1=traced(t_probe),
            rtol=traced(PROBE_RTOL),
            atol=traced(PROBE_ATOL),
            ts=None,
            dt=traced(0.0),
        )
        return jax.block_until_ready(ode.integrate(config, inputs))


def choose_solver(system: Any, y0: Any, params: Any, t_span: tuple[Any, Any], *,
                  probe: bool = True) -> tuple[str, str]:
    """`solver="auto"` for an ODE-like `system` (f(t, y, p), states, stiff): (name, reason).

    Stiff when the system is marked so; otherwise when the Jacobian's spectrum at the initial
    state says so, or (probe=True) when a short explicit probe over the first 5% of t_span runs
    out of steps or ends where the spectrum says so. The choice is cached per system and values.
    """
    if system.stiff is not None:
        name = DEFAULT_STIFF if system.stiff else DEFAULT_EXPLICIT
        return name, f"system {system.name!r} is marked stiff={system.stiff}"
    if not is_concrete(y0, params, t_span):  # inside a transform: decide at the defaults
        y0, params, t_span = system.y0, system.params, system.t_span
    key = (probe, _value_key(y0, params, t_span))
    cache = system.__dict__.setdefault("_auto_solver_cache", {})
    if key in cache:
        return cache[key]
    with jax.ensure_compile_time_eval():  # eager even while the caller is being traced
        choice = _decide_stiffness(system, y0, params, t_span, probe)
    if len(cache) > 256:
        cache.clear()
    cache[key] = choice
    return choice


def _decide_stiffness(system: Any, y0: Any, params: Any, t_span: tuple[Any, Any], probe: bool):
    s = stiffness_estimate(system.f, y0, params, t_span)
    if s > STIFFNESS_THRESHOLD:
        return DEFAULT_STIFF, (
            f"stiff: max|Re λ|·(t1−t0) = {s:.3g} > {STIFFNESS_THRESHOLD:g} at the initial state")
    if not probe:
        return DEFAULT_EXPLICIT, f"non-stiff: max|Re λ|·(t1−t0) = {s:.3g} at the initial state"
    out = _probe(system, y0, params, t_span)
    t_probe = t_span[0] + PROBE_FRACTION * (t_span[1] - t_span[0])
    s_end = stiffness_estimate(system.f, out.y_reached, params, (t_probe, t_span[1]))
    if not out.ok:
        return DEFAULT_STIFF, (
            f"stiff: an explicit probe ({DEFAULT_EXPLICIT}) took {PROBE_STEPS} steps without "
            f"covering the first {PROBE_FRACTION:.0%} of t_span")
    if s_end > STIFFNESS_THRESHOLD:
        return DEFAULT_STIFF, (
            f"stiff: max|Re λ|·(t1−t) = {s_end:.3g} > {STIFFNESS_THRESHOLD:g} after "
            f"{PROBE_FRACTION:.0%} of t_span")
    return DEFAULT_EXPLICIT, (
        f"non-stiff: max|Re λ|·(t1−t0) = {max(s, s_end):.3g} and an explicit probe took "
        f"{int(out.num_steps)} steps over the first {PROBE_FRACTION:.0%}")


def _value_key(*trees: Any) -> tuple:
    leaves = jax.tree_util.tree_leaves(trees)
    return tuple(
        np.asarray(x).tobytes() if hasattr(x, "shape") or isinstance(x, (float, int)) else id(x)
        for x in leaves
    )


# --------------------------------------------------------------------------------------------
# method="auto" in a derivative call: the route
# --------------------------------------------------------------------------------------------
def choose_route(request: str, n_params: int, nested: bool) -> tuple:
    """The route "auto" takes for a derivative `request` of `n_params` parameters.

    First derivatives: forward mode for few parameters, else reverse. Second order (not
    nested): reverse over forward sensitivities (HVP ≈ 1–5 gradients whatever the number of
    parameters), except HVPs of few parameters and dense Hessians of up to 20, where forward
    over forward is cheaper. Nested gradients (reverse over reverse) are a plain
    ("reverse", order) and get `direct`.
    """
    direction, order = REQUEST_ORDER[request]
    if nested:
        return "reverse", order + 1
    if request in ("gradient", "jacobian") and n_params <= FEW_PARAMETERS:
        return "forward", 1
    if (request == "hessian" and n_params <= FEW_PARAMETERS_FOR_HESSIAN) or (
            request == "hvp" and n_params <= FEW_PARAMETERS):
        return "forward", 2
    if order >= 2:
        return "reverse", order, REVERSE_OVER_FORWARD
    return direction, order


# --------------------------------------------------------------------------------------------
# method="auto" in a solve: the method for the route
# --------------------------------------------------------------------------------------------
def choose_method(route: tuple | None, *, stiff: bool = False, kind: str = "ode") -> GradientMethod:
    """The method that serves the derivative route in force (None: no derivative).

    No derivative: `checkpoint` (its forward solve is the plain one). Forward mode (few
    parameters, ol.jvp, forward-over-forward Hessians): `forward`, the cheapest measured,
    except with a stiff (implicit) solver, where it is `forward-sensitivity`: its step control
    covers the tangents, while `forward` differentiates steps chosen for the state alone.
    Reverse first order: `checkpoint` (exact, never re-integrates the state backward). Reverse
    over forward (HVPs): `checkpoint` with its sensitivity rule. A gradient of a gradient
    (nested calls, reverse over reverse): `direct`, the one route that composes so. Delay
    equations: `forward`, `direct` for second order, else `checkpoint` (the sensitivity rule
    and forward-sensitivity are for ODE solves).
    """
    if route is None:
        return method_object("checkpoint")
    direction, order = route[0], route[1]
    if direction == "forward":
        name = "forward-sensitivity" if stiff and kind == "ode" else "forward"
    elif order >= 2 and (kind == "delay" or not wants_reverse_over_forward(route)):
        name = "direct"
    else:
        name = "checkpoint"
    return method_object(name)


# --------------------------------------------------------------------------------------------
# method="auto" within a memory budget
# --------------------------------------------------------------------------------------------
def fit_to_budget(method: GradientMethod, route: tuple | None, problem: Any, budget: float, *,
                  stiff: bool = False, kind: str = "ode") -> tuple[GradientMethod, str]:
    """(the method "auto" takes, why) for the solve `problem` (`memory.MemoryProblem`) within
    `budget` bytes, starting from `method`, the choice `choose_method` made without a budget.

    The usual case changes nothing: the chosen method's planned memory fits. When `checkpoint`
    with its default checkpoints (one per step) would not fit, the fastest plan that fits is
    the most checkpoints that fit (diffrax's binomial schedule recomputes forward steps, fewer
    sweeps the more checkpoints it keeps); an approximate route (`backsolve`, constant memory
    in steps) is taken only when not even two checkpoints fit. Auto never trades exactness for
    time on its own. When nothing fits, the least memory among checkpoint plans of at most
    `MAX_RECOMPUTATION_SWEEPS` sweeps. Other choices and delay equations keep their method.
    """
    planned = memory.planned_memory(method, problem, route)
    if planned <= budget:
        return method, ""
    over = (f"{method.name} as planned ({size_text(planned)}) exceeds the memory budget of "
            f"{size_text(budget)}")
    if method.name != "checkpoint" or kind != "ode" or method.checkpoints is not None:
        return method, f"{over}; kept {method.name} (no other plan for this route)"
    sized = memory.with_route(problem, route)
    k = memory.checkpoints_within(sized, budget)
    if k >= 2:
        fitted = type(method)(k, tangent_rule=method.tangent_rule)
        sweeps = memory.recomputation_sweeps(k, sized.max_steps)
        return fitted, (
            f"{over}; took checkpoint with {k} checkpoints (planned "
            f"{size_text(memory.planned_memory(fitted, problem, route))}; the binomial schedule "
            f"recomputes the forward steps in up to {sweeps} sweeps)")
    backsolve = method_object("backsolve")
    first_order = route is not None and route[1] == 1 and not stiff
    if first_order and memory.planned_memory(backsolve, problem, route) <= budget:
        return backsolve, (
            f"{over}, even with 2 checkpoints; took backsolve (constant memory in steps; "
            "approximate: the continuous adjoint to about the solver tolerance)")
    # nothing fits: the least memory among exact plans whose recomputation stays bounded
    k = memory.fewest_checkpoints(sized.max_steps, MAX_RECOMPUTATION_SWEEPS)
    fitted = type(method)(k, tangent_rule=method.tangent_rule)
    return fitted, (
        f"{over}, and no plan fits it; took checkpoint with {k} checkpoints (planned "
        f"{size_text(memory.planned_memory(fitted, problem, route))}), the least memory for at "
        f"most {MAX_RECOMPUTATION_SWEEPS} recomputation sweeps")
