"""`interpolating`: continuous adjoint reading the state from the forward solution's interpolant."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax

from .._errors import InputError
from .base import Capabilities, GradientMethod


class Interpolating(GradientMethod):
    """Reverse mode by the adjoint ODE, integrated backward between save times.

    The state y(t) the adjoint needs is read from the dense interpolant of a forward solve (never
    re-integrated backward, so it stays stable on stiff and chaotic problems, unlike
    `backsolve`). Forward mode (jax.jvp) uses forward sensitivities with error control, and
    every inner solve is forward-differentiable, so Hessian-vector products (jvp of the
    gradient), `jax.hessian` and `jacfwd(jacfwd)` all work, for any number of parameters.
    A gradient of a gradient (reverse over reverse) is refused: use method='direct'.

    Accuracy: the gradient of the continuous problem, to about the solver tolerance (errors of
    roughly 10–100 × rtol; second derivatives want rtol ≤ 1e-8). Derivatives are taken with
    respect to y0 and the parameters, not t_span or save times. With saveat="dense" the solve
    falls back to `direct` (autodiff through the unrolled solver). See SECOND_ORDER.md.

    `checkpoints=k` bounds the memory of long solves: the backward pass keeps the interpolant
    of one of k segments at a time (each solved again from its checkpointed start state)
    instead of the whole solve's, for about two more forward solves (adaptive or fixed steps).
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
        memory="O(steps × state) for the interpolant; Interpolating(k): O(steps/k × state)",
        cost="gradient ≈ 10–70 solves (more with many save points); HVP ≈ 2–5× gradient",
        stiff="fine: the state comes from the forward interpolant, never from backward solving",
        description="Continuous adjoint reading the state from the forward solution's dense "
        "interpolant; forward sensitivities for jvp; composes with jvp, vmap, hessian.",
    )

    def __init__(self, checkpoints: int | None = None):
        if checkpoints is not None and (
                isinstance(checkpoints, bool) or not isinstance(checkpoints, int)
                or checkpoints < 1):
            raise InputError(
                f"`Interpolating(checkpoints={checkpoints!r})`: checkpoints must be a positive "
                "whole number (e.g. Interpolating(checkpoints=64)), or None to keep the whole "
                "interpolant.")
        self.checkpoints = checkpoints

    def integrate(self, run: Callable[..., Any], inputs: Any, *, max_steps: int,
                  state_size: int, config: Any = None) -> Any:
        return primitive_or_direct(run, inputs, config)


def primitive_or_direct(run: Callable[..., Any], inputs: Any, config: Any) -> Any:
    """The solve as odelab's primitive, or through diffrax DirectAdjoint for dense output."""
    if config is None or config.save == "dense":
        # a dense interpolant is not an output the primitive differentiates
        return run(inputs, diffrax.DirectAdjoint())
    from ._primitive import solve_primitive

    return solve_primitive(config, run, inputs)
