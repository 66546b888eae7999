"""`forward`: forward-mode autodiff through the solver."""

from __future__ import annotations

from typing import Any

import diffrax

from ..solve.gradient_method import Capabilities, GradientMethod


class Forward(GradientMethod):
    """Push tangents through the solver's steps (jax.jvp / jacfwd).

    Cheapest for few parameters: one pass per parameter direction. Second order by
    forward-over-forward. The step sizes follow the state only, so on stiff problems the
    tangents can be inaccurate; `forward-sensitivity` controls their error as well.
    """

    name = "forward"
    applies_to = ("ode", "delay")
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

    def planned_bytes(self, problem: Any) -> float:
        # one tangent of the solve per parameter direction (a gradient: every parameter)
        return problem.solve_bytes * (1 + problem.n_params)
