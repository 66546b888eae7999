"""`finite-difference`: central differences with step choice and Richardson extrapolation."""

from __future__ import annotations

from typing import Any

import diffrax
import numpy as np

from .._errors import InputError
from .._inputs import is_traced, scalar
from ..solve.gradient_method import Capabilities, GradientMethod

NOISE_STEP = "noise"  # the noise-balanced step alone, no search (derivatives/finite_difference)


def _check_step(step: Any) -> Any:
    way = ("Give a positive relative step such as FiniteDifference(step=1e-4), step=\"noise\" "
           "for the step balanced against the solves' noise, or step=None to search for the best "
           "step.")
    if isinstance(step, str) and step == NOISE_STEP:
        return step
    try:
        value = scalar("step", step)
    except InputError as err:
        raise InputError(f"`FiniteDifference(step={step!r:.60})`: {err} {way}") from None
    if not is_traced(value) and not value > 0:
        raise InputError(f"`FiniteDifference(step={step!r})` must be positive. {way}")
    if not is_traced(value) and not value < 1:
        # the step is relative: p(1 - h) with h >= 1 is zero or has the opposite sign, and what
        # comes back would be a difference quotient over the whole range, not a derivative
        raise InputError(f"`FiniteDifference(step={step!r})` is a relative step and must be "
                         f"below 1 (a step of 100% or more is no derivative). {way}")
    return value


class FiniteDifference(GradientMethod):
    """Central differences of the whole objective: a reference and a last resort.

    Applied by the derivative functions to `fun` as a whole (the solves inside run plainly).
    `step=None` searches a step per parameter, `step="noise"` takes the step balanced against
    the noise of the solves inside (their recorded tolerances); `richardson=True` combines steps
    h and h/2 to cancel the leading error term.
    """

    name = "finite-difference"
    applies_to = ("ode", "delay")
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

    def __init__(self, step: float | str | None = None, richardson: bool = True):
        # checked here: a zero, negative or NaN step would give NaN gradients without a word
        self.step = None if step is None else _check_step(step)
        if not isinstance(richardson, (bool, np.bool_)):
            raise InputError(f"`FiniteDifference(richardson={richardson!r:.60})` must be True or "
                             "False.")
        self.richardson = bool(richardson)

    def refuses(self, chain: tuple[str, ...]) -> str | None:
        # differences of the whole objective: its solves are never differentiated by AD
        return chain[0] if chain else None

    def adjoint(self, *, max_steps: int, state_size: int) -> diffrax.AbstractAdjoint:
        # The solves themselves are never differentiated by AD under this method.
        return diffrax.RecursiveCheckpointAdjoint()

    def planned_bytes(self, problem: Any) -> float:
        return 2 * problem.solve_bytes  # plain solves, two at a time
