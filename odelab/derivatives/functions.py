"""The public derivative functions: gradient, value_and_gradient, jacobian, jvp, hvp, hessian.

Each one lays `method=` (and `solver=`, `rtol=`, `atol=`, `max_steps=`, `memory_budget=` when
given) over every solve in `fun` that does not name its own, plans the derivative
(`plan.make_plan`: the capability check before anything is traced, the route), and runs the
plan's compiled program (`programs.run`), cached per (fun, plan), so calling again with new
values never recompiles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import InputError
from .._inputs import as_params, check_param_leaves, check_params_finite
from ..methods import FiniteDifference
from . import finite_difference as fd
from . import programs
from .plan import make_plan, split_params


def _with_static(tree: Any, static: Any) -> Any:
    return eqx.combine(tree, static) if static is not None else tree


def value_and_gradient(
    fun: Callable,
    params: Any,
    method: Any = "auto",
    *,
    solver: Any = None,
    rtol: Any = None,
    atol: Any = None,
    max_steps: int | None = None,
    memory_budget: Any = None,
    has_aux: bool = False,
):
    """(fun(params), ∇fun(params)) with `method` applied to every solve inside `fun`.

    With has_aux=True, `fun` returns (loss, aux) and this returns ((loss, aux), gradient).
    The gradient has the structure of `params` (None where a leaf is not a float array).

        >>> loss, g = ol.value_and_gradient(loss_fn, sys.params, method="checkpoint")
    """
    plan, diff, static = make_plan("gradient", params, method, solver=solver, has_aux=has_aux,
                                   max_steps=max_steps, memory_budget=memory_budget)
    value, aux, g = programs.run(plan, fun, diff, static, rtol, atol)
    return ((value, aux) if has_aux else value), _with_static(g, static)


def gradient(
    fun: Callable,
    params: Any,
    method: Any = "auto",
    *,
    solver: Any = None,
    rtol: Any = None,
    atol: Any = None,
    max_steps: int | None = None,
    memory_budget: Any = None,
    has_aux: bool = False,
):
    """∇fun(params): the gradient of a scalar objective that calls `ol.solve` inside.

    method: "auto", "checkpoint", "direct", "backsolve", "forward", "finite-difference", ... (see
    `ol.methods()`), applied to every solve in `fun` that does not name its own.
    memory_budget: bytes or a size ("512MB") that "auto" plans each solve's derivative within
      (default: ODELAB_MEMORY_BUDGET, else half the device's free memory): beyond it, checkpoint
      keeps fewer checkpoints (more recomputation) instead of one per step.

        >>> g = ol.gradient(lambda p: jnp.sum(ol.solve(sys, params=p).ys ** 2), sys.params)
    """
    value, g = value_and_gradient(
        fun, params, method, solver=solver, rtol=rtol, atol=atol, max_steps=max_steps,
        memory_budget=memory_budget, has_aux=has_aux
    )
    return (g, value[1]) if has_aux else g


def jacobian(
    fun: Callable,
    params: Any,
    method: Any = "auto",
    *,
    solver: Any = None,
    rtol: Any = None,
    atol: Any = None,
    max_steps: int | None = None,
    memory_budget: Any = None,
):
    """∂fun/∂params for an array-valued `fun` (leaves have shape fun's shape + leaf shape)."""
    plan, diff, static = make_plan("jacobian", params, method, solver=solver,
                                   max_steps=max_steps, memory_budget=memory_budget)
    _, jac = programs.run(plan, fun, diff, static, rtol, atol)
    return jac


def tangent_like(diff_params: Any, tangent: Any, argument: str) -> Any:
    """`tangent` checked against the differentiated params (structure, shapes, finite values)
    and cast to their dtypes; an InputError naming `argument` otherwise."""
    check_param_leaves(tangent, argument)
    t_diff, _ = eqx.partition(as_params(tangent), eqx.is_inexact_array)
    check_params_finite(t_diff, argument)
    if jax.tree_util.tree_structure(t_diff) != jax.tree_util.tree_structure(diff_params):
        raise InputError(
            f"`{argument}` must have the structure of `params` (the same keys and array shapes); "
            f"got {jax.tree_util.tree_structure(t_diff)}."
        )
    for a, b in zip(jax.tree_util.tree_leaves(t_diff), jax.tree_util.tree_leaves(diff_params)):
        if np.shape(a) != np.shape(b):
            raise InputError(
                f"`{argument}` has a leaf of shape {np.shape(a)} where params has {np.shape(b)}."
            )
    return jax.tree_util.tree_map(lambda a, b: jnp.asarray(a, dtype=b.dtype), t_diff, diff_params)


def jvp(
    fun: Callable,
    params: Any,
    tangent: Any,
    method: Any = "auto",
    *,
    solver: Any = None,
    rtol: Any = None,
    atol: Any = None,
    max_steps: int | None = None,
    memory_budget: Any = None,
):
    """(fun(params), J·tangent): the directional derivative of `fun` along `tangent`."""
    plan, diff, static = make_plan("jvp", params, method, solver=solver,
                                   max_steps=max_steps, memory_budget=memory_budget)
    t = tangent_like(diff, tangent, "tangent")
    value, tout = programs.run(plan, fun, diff, static, rtol, atol, t)
    return value, tout


def hvp(
    fun: Callable,
    params: Any,
    vector: Any,
    method: Any = "auto",
    *,
    solver: Any = None,
    rtol: Any = None,
    atol: Any = None,
    max_steps: int | None = None,
    memory_budget: Any = None,
):
    """H·vector: the Hessian of scalar `fun` at `params` times `vector`, without forming H."""
    plan, diff, static = make_plan("hvp", params, method, solver=solver,
                                   max_steps=max_steps, memory_budget=memory_budget)
    v = tangent_like(diff, vector, "vector")
    return programs.run(plan, fun, diff, static, rtol, atol, v)


def hessian(
    fun: Callable,
    params: Any,
    method: Any = "auto",
    *,
    solver: Any = None,
    rtol: Any = None,
    atol: Any = None,
    max_steps: int | None = None,
    memory_budget: Any = None,
) -> jax.Array:
    """The dense Hessian of scalar `fun`, as an (n, n) array over the flattened parameters.

    The order of the flattened parameters is that of `jax.flatten_util.ravel_pytree(params)`
    (dict keys sorted); `ol.flat_names(params)` gives their names.
    """
    plan, diff, static = make_plan("hessian", params, method, solver=solver,
                                   max_steps=max_steps, memory_budget=memory_budget)
    return programs.run(plan, fun, diff, static, rtol, atol)


def difference_estimate(
    fun: Callable,
    params: Any,
    direction: Any = None,
    *,
    solver: Any = None,
    rtol: Any = None,
    atol: Any = None,
    max_steps: int | None = None,
    richardson: bool = True,
) -> fd.Estimate:
    """Finite differences of `fun` with their own error estimate, steps searched per component.

    The gradient (direction None) or the directional derivative along `direction`, each
    component from the step at which neighbouring steps agree best; `errors` is that
    disagreement. The noise the search starts from is that of the tolerances the solves inside
    `fun` actually ran at. A cross-check for AD gradients that shares none of their code.

        >>> est = difference_estimate(loss, params, rtol=1e-12)
        >>> est.values, est.errors
    """
    request = "gradient" if direction is None else "jvp"
    plan, diff, static = make_plan(request, params, FiniteDifference(richardson=richardson),
                                   solver=solver, max_steps=max_steps)
    tangent = None if direction is None else tangent_like(diff, direction, "direction")
    r, a = programs.tolerances(rtol, atol)

    def build():
        call = programs.objective(fun, static, plan)
        return eqx.filter_jit(lambda d, rr, aa, t: fd.estimate(call, d, rr, aa, t, richardson))

    program = programs.compiled(fun, ("difference-estimate", plan), build)
    (value, values, errors, steps, noise), codes = program(diff, r, a, tangent)
    programs.raise_failures(codes)
    flat = lambda x: np.atleast_1d(np.asarray(x, dtype=float)).reshape(-1)
    return fd.Estimate(value=np.asarray(value), values=flat(values), errors=flat(errors),
                       steps=flat(steps), noise=float(noise))


def flat_names(params: Any) -> list[str]:
    """Names of the flattened parameters, in the order Hessians and spectra use."""
    diff, _ = split_params(params)
    names = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(diff):
        base = jax.tree_util.keystr(path).replace("['", "").replace("']", ".").rstrip(".")
        base = base.lstrip(".") or "p"
        if np.ndim(leaf) == 0:
            names.append(base)
        else:
            names.extend(f"{base}[{i}]" for i in range(int(np.size(leaf))))
    return names
