"""`forward`: forward-mode autodiff through the solver."""

from __future__ import annotations

import diffrax

from .base import Capabilities, GradientMethod


class Forward(GradientMethod):
    """Push tangents through the solver's steps (jax.jvp / jacfwd).

    Cheapest for few parameters: one pass per parameter direction. Second order by
    forward-over-forward. The step sizes follow the state only, so on stiff problems the
    tangents can be inaccurate; `forward-sensitivity` controls their error as well.
    """

    name = "forward"
    capabilities = Capabilities(
        reverse=False,
        forward=True,
        second_order=("forward-over-forward",),
        nested=False,
        exact=True,
        memory="O(1) in steps",
        cost="≈ 2–3 solves per parameter direction",
        stiff="gradient can be inaccurate: step control ignores the tangents",
        description="Forward-mode autodiff through the solver (diffrax ForwardMode).",
    )

    def adjoint(self, *, max_steps: int, state_size: int) -> diffrax.AbstractAdjoint:
        return diffrax.ForwardMode()
