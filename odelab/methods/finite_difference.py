"""`finite-difference`: central differences with step choice and Richardson extrapolation."""

from __future__ import annotations

import diffrax

from .base import Capabilities, GradientMethod


class FiniteDifference(GradientMethod):
    """Central differences of the whole objective: a reference and a last resort.

    Applied by the derivative functions to `fun` as a whole (the solves inside run plainly).
    `step=None` picks a step per parameter; `richardson=True` combines steps h and h/2 to cancel
    the leading error term.
    """

    name = "finite-difference"
    capabilities = Capabilities(
        reverse=False,
        forward=True,
        second_order=("differences of gradients",),
        nested=True,  # it only evaluates fun: gradients inside fun run as they would alone
        exact=False,
        memory="O(1)",
        cost="2–4 objective evaluations per parameter",
        stiff="fine if the solver tolerance is far below the step's truncation error",
        description="Central finite differences with Richardson extrapolation.",
    )

    def __init__(self, step: float | None = None, richardson: bool = True):
        self.step = step
        self.richardson = richardson

    def adjoint(self, *, max_steps: int, state_size: int) -> diffrax.AbstractAdjoint:
        # The solves themselves are never differentiated by AD under this method.
        return diffrax.RecursiveCheckpointAdjoint()
