"""Reverse mode over forward sensitivities: second derivatives for reverse-only adjoints.

diffrax's `RecursiveCheckpointAdjoint` is a `custom_vjp`, so `jax.jvp` cannot go through it
and forward-over-reverse Hessian-vector products are impossible. The other order works:
H·v = ∇ₚ(∇L·v). Here the solve gets a JVP rule (`jax.custom_jvp`) that integrates the state
and its forward sensitivities s = ∂y/∂(y0, p)·(ẏ0, ṗ) as one system (`tangent_field`, with the
error norm covering s), run under the method's own diffrax adjoint. Reverse mode then
differentiates that augmented solve the way the method differentiates any solve (binomial
checkpointing for `checkpoint`), so `jax.grad(lambda p: jax.jvp(loss, (p,), (v,))[1])` is an
HVP costing about one gradient of a solve twice the size: a few gradients, whatever the number
of parameters.

Only the derivative programs that ask for this route (`ol.hvp`, `ol.hessian`) use it: a plain
`jax.grad` of this rule would have to transpose the sensitivity solve's while loop, which JAX
cannot do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu

from .._errors import MethodError

_TIME_INPUTS = ("t0", "t1", "ts", "rtol", "atol", "dt")


@eqx.filter_custom_jvp
def _solve(y0, pdiff, rest, prest, run, adjoint, method_name):
    return run({**rest, "y0": y0, "params": eqx.combine(pdiff, prest)}, adjoint)


@_solve.def_jvp
def _solve_jvp(primals, tangents):
    y0, pdiff, rest, prest, run, adjoint, method_name = primals
    ty0, tpdiff, trest = tangents[:3]
    moving = [k for k in _TIME_INPUTS if jtu.tree_leaves(trest.get(k) if trest else None)]
    if moving:
        raise MethodError(
            f"`method={method_name!r}` differentiates with respect to y0 and the parameters "
            f"only, not {', '.join(moving)} (t_span, save times, tolerances). Use "
            "method='direct' to differentiate with respect to times."
        )
    ty0 = jnp.zeros_like(y0) if ty0 is None else ty0
    if tpdiff is None:
        tpdiff = jtu.tree_map(lambda _: None, pdiff)
    tp = jtu.tree_map(lambda p, t: jnp.zeros_like(p) if t is None else t, pdiff, tpdiff)
    inputs = {**rest, "y0": y0, "params": eqx.combine(pdiff, prest)}
    sol, (s_ys, s_end) = run(inputs, adjoint, tangents=(ty0, tp))
    # only the saved states and the final state carry tangents; counts and codes do not
    zero = {f.name: None for f in dataclasses.fields(sol) if not f.metadata.get("static")}
    return sol, dataclasses.replace(sol, **{**zero, "ys": s_ys, "y_reached": s_end})


def solve_with_tangent_rule(run: Callable[..., Any], inputs: dict[str, Any],
                            adjoint: diffrax.AbstractAdjoint, method_name: str) -> Any:
    """Run `run(inputs, adjoint)` (the solve) with the sensitivity JVP rule described above."""
    pdiff, prest = eqx.partition(inputs["params"], eqx.is_inexact_array)
    rest = {k: v for k, v in inputs.items() if k not in ("y0", "params")}
    return _solve(inputs["y0"], pdiff, rest, prest, run, adjoint, method_name)
