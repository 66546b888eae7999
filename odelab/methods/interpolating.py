"""`interpolating`: continuous adjoint reading the state from the forward solution's interpolant."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import diffrax
import numpy as np

from .._errors import InputError
from ..solve.gradient_method import Capabilities, GradientMethod
from ._primitive import solve_primitive


class Interpolating(GradientMethod):
    """Reverse mode by the adjoint ODE, integrated backward in one sweep over the whole span.

    The state y(t) the adjoint needs is read from the dense output of the forward pass (never
    re-integrated backward, so it stays stable on stiff and chaotic problems, unlike
    `backsolve`); the forward pass is the solve itself, taking the plain solve's steps and
    keeping their dense output. The adjoint jumps by each save's cotangent at its save time
    without restarting the step-size controller, and the parameter cotangent is integrated
    alongside from the same stages. Forward mode (jax.jvp) uses forward sensitivities with
    error control, and the whole adjoint program is forward-differentiable, so
    Hessian-vector products (jvp of the gradient), `jax.hessian` and `jacfwd(jacfwd)` all
    work, for any number of parameters. A gradient of a gradient (reverse over reverse) is
    refused: use method='direct'.

    Accuracy: the gradient of the continuous problem, to about the solver tolerance (errors of
    roughly 1–100 × rtol; second derivatives want rtol ≤ 1e-8). Derivatives are taken with
    respect to y0 and the parameters, not t_span or save times. With saveat="dense" the solve
    falls back to `direct` (autodiff through the unrolled solver). See SECOND_ORDER.md.

    `checkpoints=k` bounds the memory of long solves: the forward pass keeps the integration
    state every max_steps/k steps instead of every step's dense output, and the backward sweep
    solves one segment at a time again from its checkpoint: memory O((k + max_steps/k) ×
    state) for about one forward solve more (adaptive or fixed steps).
    """

    name = "interpolating"
    uses_config = True  # `integrate` receives the SolveConfig of the solve
    prefers = "reverse"
    capabilities = Capabilities(
        reverse=True,
        forward=True,
        second_order=("forward-over-reverse", "forward-over-forward"),
        nested=False,
        exact=False,
        memory="O(max_steps × state) for the dense output; Interpolating(k): "
        "O((k + max_steps/k) × state)",
        cost="gradient ≈ 3–8 solves (one backward sweep; at least one step per save "
        "interval); HVP ≈ 1.5–3× gradient",
        stiff="fine: the state comes from the forward interpolant, never from backward solving",
        description="Continuous adjoint reading the state from the forward solution's dense "
        "interpolant; forward sensitivities for jvp; composes with jvp, vmap, hessian.",
    )

    def __init__(self, checkpoints: int | None = None):
        if checkpoints is not None and (
                isinstance(checkpoints, bool) or not isinstance(checkpoints, (int, np.integer))
                or checkpoints < 1):
            raise InputError(
                f"`Interpolating(checkpoints={checkpoints!r})`: checkpoints must be a positive "
                "whole number (e.g. Interpolating(checkpoints=64)), or None to keep the whole "
                "interpolant.")
        self.checkpoints = None if checkpoints is None else int(checkpoints)

    def planned_bytes(self, problem: Any) -> float:
        # the forward interpolant (each step's stages, start and end state), whole or one
        # segment at a time with its checkpoints, and the backward sweep's state
        n, item = problem.state_size, problem.itemsize
        steps = problem.max_steps
        if self.checkpoints is not None:
            steps = self.checkpoints + math.ceil(problem.max_steps / self.checkpoints)
        dense = steps * ((problem.stages + 2) * n + 1) * item
        return (problem.solve_bytes + dense
                + 2 * (problem.stages + 4) * (2 * n + problem.n_params) * item)

    def integrate(self, run: Callable[..., Any], inputs: Any, *, max_steps: int,
                  state_size: int, config: Any = None) -> Any:
        return primitive_or_direct(run, inputs, config)


def primitive_or_direct(run: Callable[..., Any], inputs: Any, config: Any) -> Any:
    """The solve as odelab's primitive, or through diffrax DirectAdjoint for dense output."""
    if config is None or config.save == "dense":
        # a dense interpolant is not an output the primitive differentiates
        return run(inputs, diffrax.DirectAdjoint())
    return solve_primitive(config, run, inputs)
