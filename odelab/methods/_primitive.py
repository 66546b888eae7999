"""The solve as a JAX primitive, so that every transform of the user's code composes with it.

Two primitives (built the way lineax builds its linear solve, on equinox.internal):

- `odelab_solve`: the plain solve (y0, params) -> saved states. Its JVP rule computes the primal
  with `forward_pass` (the plain solve's steps, keeping their dense output for the adjoint) and
  binds `odelab_tangent`.
- `odelab_tangent`: the forward sensitivities s(t) = ∂y(t)/∂(y0, params) · (ẏ0, ṗ), integrated
  together with the state, the step-size controller's error norm covering both. It is linear in
  (ẏ0, ṗ); its transpose rule is the interpolating adjoint: one backward sweep from t1 to t0,
  reading y(t) from the forward pass's dense output (`_inner.adjoint_solve`).

Everything after the plain solve is plain JAX and forward-differentiable, so `jax.jvp` of a
gradient (Hessian-vector products), `jax.hessian` and `jacfwd(jacfwd)` work; batching comes from
equinox's `create_vprim` (each rule is vmapped). Reverse mode over the adjoint (a gradient of a
gradient) is not supported: the adjoint's while loops cannot be transposed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jax.interpreters import ad

from .._errors import MethodError
from ._inner import _is_none, adjoint_solve, forward_pass, tangent_solve

_TIME_INPUTS = ("t0", "t1", "ts", "rtol", "atol", "dt")


def _to_struct(x: Any) -> Any:
    if isinstance(x, jax.core.ShapedArray):
        return jax.ShapeDtypeStruct(x.shape, x.dtype)
    return x


def _to_shaped(x: Any) -> Any:
    if isinstance(x, jax.ShapeDtypeStruct):
        return jax.core.ShapedArray(x.shape, x.dtype)
    return x


def _abstract(impl):
    """The abstract-evaluation rule of a primitive whose implementation is `impl`."""

    def rule(*args):
        args = jtu.tree_map(_to_struct, args)
        return jtu.tree_map(_to_shaped, eqx.filter_eval_shape(impl, *args))

    return eqxi.filter_primitive_def(rule)


def _refuse_time_tangents(config: Any, t_rest: dict[str, Any]) -> None:
    moving = [k for k in _TIME_INPUTS if jtu.tree_leaves(t_rest.get(k))]
    if moving:
        raise _time_error(config, moving)


def _time_error(config: Any, moving: list[str]) -> MethodError:
    return MethodError(
        f"`method={config.method.name!r}` differentiates with respect to y0 and the parameters "
        f"only, not {', '.join(moving)} (t_span, save times, tolerances). Use method='direct' "
        "to differentiate with respect to times."
    )


def _guard_times(config: Any, rest: dict[str, Any]) -> dict[str, Any]:
    """`rest` with its times and tolerances passed through an identity whose derivative is an
    error: the forward pass runs as plain JAX inside the JVP rule, so a derivative of a
    derivative with respect to them (jvp of grad in t1, say) would otherwise pass through it
    unchecked. (JAX calls the rule only for a tangent that is not a symbolic zero.)"""

    def guarded(name: str, x: Any) -> Any:
        @jax.custom_jvp
        def same(v):
            return v

        @same.defjvp
        def _refuse(primals, tangents):
            raise _time_error(config, [name])

        return same(x)

    return {k: guarded(k, v) if k in _TIME_INPUTS and v is not None else v
            for k, v in rest.items()}


def _materialise(primal: Any, tangent: Any) -> Any:
    return jtu.tree_map(eqxi.materialise_zeros, primal, tangent, is_leaf=_is_none)


# --------------------------------------------------------------------------------------------
# odelab_solve: the primal
# --------------------------------------------------------------------------------------------
def _primal_impl(config, run, rest, pdiff, prest):
    # never differentiated by JAX (the JVP rule below is), so the plainest loop will do
    return run({**rest, "params": eqx.combine(pdiff, prest)}, diffrax.ForwardMode())


def _primal_transpose(inputs, cts):
    raise AssertionError("the solve is not linear; JAX never transposes it")


def _primal_jvp(primals, tangents):
    config, run, rest, pdiff, prest = primals
    _, _, t_rest, t_pdiff, _ = tangents
    _refuse_time_tangents(config, t_rest)
    sol, residual = _primal_keeping_residual(config, run, rest, pdiff, prest)
    ty0 = eqxi.materialise_zeros(rest["y0"], t_rest["y0"])
    tp = _materialise(pdiff, t_pdiff)
    ty0, tp = _batched_like_primals((rest, pdiff, prest), (ty0, tp))
    t_ys, t_end = eqxi.filter_primitive_bind(_tangent_p, config, rest, pdiff, prest, residual,
                                             ty0, tp)
    none = {f.name: None for f in dataclasses.fields(sol) if not f.metadata.get("static")}
    t_sol = dataclasses.replace(sol, **{**none, "ys": t_ys, "y_reached": t_end})
    return sol, t_sol


_OUTPUTS = ("ts", "ys", "t_reached", "y_reached", "result", "num_steps", "num_accepted",
            "num_rejected")


def _primal_keeping_residual(config, run, rest, pdiff, prest):
    """The primal Solution and what the adjoint needs of the forward solve (None: nothing).

    For `interpolating` (which serves reverse mode) the primal comes from `forward_pass`, which
    takes the same steps as the plain solve and keeps the dense output (or checkpoints) for the
    adjoint, so a gradient does not solve forward twice. `forward-sensitivity` (forward mode
    first) keeps the plain solve, and its adjoint re-solves. A Solution with outputs this
    module does not know of falls back to the latter too.
    """
    plain = config.method.prefers != "reverse"
    if not plain:
        template = eqx.filter_eval_shape(_primal_impl, config, run, rest, pdiff, prest)
        known = {f.name for f in dataclasses.fields(template)
                 if not f.metadata.get("static") and f.name != "dense"}
        plain = known != set(_OUTPUTS) or template.dense is not None
    if plain:
        return eqxi.filter_primitive_bind(_solve_p, config, run, rest, pdiff, prest), None
    outputs, residual = forward_pass(config, _guard_times(config, rest), pdiff, prest)
    fields = {k: jnp.asarray(outputs[k]).astype(getattr(template, k).dtype) for k in _OUTPUTS}
    return dataclasses.replace(template, **fields), residual


def _batched_like_primals(primals: Any, tangents: Any) -> Any:
    """`tangents` plus an exact zero that depends on every primal input.

    Under jax.vmap the sensitivity primitive's transpose is vmapped too, and its cotangents
    for (ẏ0, ṗ) depend on every primal input: when y0 is batched but the parameters are not
    (a vmap over initial states inside a gradient), the parameters' cotangent is batched while
    their tangent was not, which equinox's vmapped transpose cannot return. Making the
    tangents depend on the primals batches them whenever any primal is batched; the batch sum
    then happens where JAX transposes the broadcast. The zero comes from `where`, so an inf or
    nan in the primals cannot leak into it.
    """
    leaves = [jnp.sum(x) for x in jtu.tree_leaves(primals) if eqx.is_array(x)]
    if not leaves:
        return tangents
    zero = jnp.where(jnp.isfinite(sum(leaves)), 0.0, 0.0)
    return jtu.tree_map(lambda t: t + zero.astype(t.dtype), tangents)


_solve_p = eqxi.create_vprim(
    "odelab_solve",
    eqxi.filter_primitive_def(_primal_impl),
    _abstract(_primal_impl),
    eqxi.filter_primitive_jvp(_primal_jvp),
    eqxi.filter_primitive_transpose(_primal_transpose),
)


# --------------------------------------------------------------------------------------------
# odelab_tangent: forward sensitivities, linear in (ty0, tp)
# --------------------------------------------------------------------------------------------
def _tangent_impl(config, rest, pdiff, prest, residual, ty0, tp):
    return tangent_solve(config, rest, pdiff, prest, ty0, tp)


def _tangent_jvp(primals, tangents):
    config, rest, pdiff, prest, _, ty0, tp = primals
    _, t_rest, t_pdiff, _, _, t_ty0, t_tp = tangents
    _refuse_time_tangents(config, t_rest)
    # Second order forward (jacfwd of jacfwd): differentiate the sensitivity solve itself;
    # its inner solve runs under diffrax ForwardMode, which jax.jvp goes through.
    y0 = rest["y0"]

    def impl(y0_, pdiff_, ty0_, tp_):
        return tangent_solve(config, {**rest, "y0": y0_}, pdiff_, prest, ty0_, tp_)

    dual = (eqxi.materialise_zeros(y0, t_rest["y0"]), _materialise(pdiff, t_pdiff),
            eqxi.materialise_zeros(ty0, t_ty0), _materialise(tp, t_tp))
    return jax.jvp(impl, (y0, pdiff, ty0, tp), dual)


def _undefined(x: Any) -> bool:
    return isinstance(x, ad.UndefinedPrimal)


def _keep_undefined(primal: Any, ct: Any) -> Any:
    return ct if _undefined(primal) else None


def _tangent_transpose(inputs, cts):
    config, rest, pdiff, prest, residual, ty0, tp = inputs
    c_ys, c_end = cts
    # a symbolic-zero cotangent can arrive as None (under vmap equinox does not materialise it)
    y0 = rest["y0"]
    if c_ys is None:
        c_ys = jnp.zeros(rest["ts"].shape + y0.shape, y0.dtype)
    if c_end is None:
        c_end = jnp.zeros_like(y0)
    y0_bar, p_bar = adjoint_solve(config, rest, pdiff, prest, c_ys, c_end, residual)
    y0_bar = _keep_undefined(ty0, y0_bar)
    p_bar = jtu.tree_map(_keep_undefined, tp, p_bar, is_leaf=lambda x: _undefined(x) or x is None)
    nothing = lambda tree: jtu.tree_map(lambda _: None, tree)  # noqa: E731
    return (None, nothing(rest), nothing(pdiff), nothing(prest), nothing(residual), y0_bar,
            p_bar)


_tangent_p = eqxi.create_vprim(
    "odelab_tangent",
    eqxi.filter_primitive_def(_tangent_impl),
    _abstract(_tangent_impl),
    eqxi.filter_primitive_jvp(_tangent_jvp),
    eqxi.filter_primitive_transpose(_tangent_transpose, materialise_zeros=True),
)


def solve_primitive(config: Any, run: Any, inputs: dict[str, Any]) -> Any:
    """Run `run(inputs, adjoint)` (the solve) as the `odelab_solve` primitive."""
    pdiff, prest = eqx.partition(inputs["params"], eqx.is_inexact_array)
    rest = {k: v for k, v in inputs.items() if k != "params"}
    return eqxi.filter_primitive_bind(_solve_p, config, run, rest, pdiff, prest)
