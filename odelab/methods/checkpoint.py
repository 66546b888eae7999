"""`checkpoint`: discretize-then-optimize through the solver with binomial checkpointing."""

from __future__ import annotations

import diffrax

from .base import Capabilities, GradientMethod

# Memory we let the checkpoints take: storing every step makes the backward pass cheapest
# (about 8 solves on Lorenz instead of about 20 with diffrax's default of log2(max_steps)).
CHECKPOINT_BUDGET_BYTES = 256 * 2**20


class Checkpoint(GradientMethod):
    """Reverse mode through the solver's steps, recomputing forward steps from checkpoints.

    `checkpoints=None` sizes them from the problem: one per step while that fits in
    `CHECKPOINT_BUDGET_BYTES`, fewer (binomial schedule) beyond.
    """

    name = "checkpoint"
    capabilities = Capabilities(
        reverse=True,
        forward=False,
        second_order=(),
        nested=False,
        exact=True,
        memory="O(checkpoints × state)",
        cost="gradient ≈ 8–20 solves",
        stiff="fine: exact gradient of whatever the solver computed",
        description="Reverse mode through the solver steps with binomial checkpointing "
        "(diffrax RecursiveCheckpointAdjoint).",
    )

    def __init__(self, checkpoints: int | None = None):
        self.checkpoints = checkpoints

    def adjoint(self, *, max_steps: int, state_size: int) -> diffrax.AbstractAdjoint:
        checkpoints = self.checkpoints
        if checkpoints is None:
            # a step stores the state plus roughly ten stage vectors of float64
            per_step = max(1, state_size) * 8 * 10
            checkpoints = max(2, min(max_steps, CHECKPOINT_BUDGET_BYTES // per_step))
        return diffrax.RecursiveCheckpointAdjoint(checkpoints=checkpoints)
