"""`checkpoint`: discretize-then-optimize through the solver with binomial checkpointing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax

from ._over_forward import ROUTE, solve_with_tangent_rule, wants_route
from .base import Capabilities, GradientMethod

# Memory we let the checkpoints take: storing every step makes the backward pass cheapest
# (about 8 solves on Lorenz instead of about 20 with diffrax's default of log2(max_steps)).
CHECKPOINT_BUDGET_BYTES = 256 * 2**20


class Checkpoint(GradientMethod):
    """Reverse mode through the solver's steps, recomputing forward steps from checkpoints.

    `checkpoints=None` sizes them from the problem: one per step while that fits in
    `CHECKPOINT_BUDGET_BYTES`, fewer (binomial schedule) beyond.

    Second order by reverse over forward sensitivities (`_over_forward.py`): ol.hvp and
    ol.hessian differentiate, through checkpoints, a solve of the state together with its
    sensitivities along the vector. A gradient of a gradient (reverse over reverse) is refused.
    """

    name = "checkpoint"
    capabilities = Capabilities(
        reverse=True,
        forward=False,
        second_order=(ROUTE,),
        nested=False,
        exact=True,
        memory="O(checkpoints × state): one per step up to 256 MB; Checkpoint(k) for less",
        cost="gradient ≈ 3–8 solves; HVP ≈ 1–4× gradient",
        stiff="fine: exact gradient of whatever the solver computed",
        description="Reverse mode through the solver steps with binomial checkpointing "
        "(diffrax RecursiveCheckpointAdjoint).",
    )

    def __init__(self, checkpoints: int | None = None, *, tangent_rule: bool = False):
        self.checkpoints = checkpoints
        # set for solves under a Hessian-vector product: see _over_forward.py
        self.tangent_rule = tangent_rule

    def for_derivative(self, derivative: tuple | None) -> Checkpoint:
        if wants_route(derivative) and not self.tangent_rule:
            return Checkpoint(self.checkpoints, tangent_rule=True)
        return self

    def integrate(self, run: Callable[..., Any], inputs: Any, *, max_steps: int,
                  state_size: int) -> Any:
        adjoint = self.adjoint(max_steps=max_steps, state_size=state_size)
        if self.tangent_rule:
            return solve_with_tangent_rule(run, inputs, adjoint, self.name)
        return run(inputs, adjoint)

    def adjoint(self, *, max_steps: int, state_size: int) -> diffrax.AbstractAdjoint:
        checkpoints = self.checkpoints
        if checkpoints is None:
            # a step stores the state plus roughly ten stage vectors of float64
            per_step = max(1, state_size) * 8 * 10
            checkpoints = max(2, min(max_steps, CHECKPOINT_BUDGET_BYTES // per_step))
        return diffrax.RecursiveCheckpointAdjoint(checkpoints=checkpoints)
