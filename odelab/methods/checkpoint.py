"""`checkpoint`: discretize-then-optimize through the solver with binomial checkpointing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax
import numpy as np

from .._errors import InputError
from ..solve.gradient_method import REVERSE_OVER_FORWARD as ROUTE
from ..solve.gradient_method import Capabilities, GradientMethod
from ..solve.gradient_method import wants_reverse_over_forward as wants_route
from ..solve.memory import checkpointed_bytes
from ._over_forward import solve_with_tangent_rule

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
    applies_to = ("ode", "delay")
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
        # checked here, not when a gradient is first taken (diffrax's own refusal comes late and
        # does not name the argument)
        if checkpoints is not None and (isinstance(checkpoints, bool) or not isinstance(
                checkpoints, (int, np.integer)) or checkpoints < 1):
            raise InputError(
                f"`Checkpoint(checkpoints={checkpoints!r:.60})`: checkpoints must be a positive "
                "whole number (e.g. Checkpoint(checkpoints=64)), or None to size them from the "
                "problem.")
        self.checkpoints = None if checkpoints is None else int(checkpoints)
        # set for solves under a Hessian-vector product: see _over_forward.py
        if not isinstance(tangent_rule, (bool, np.bool_)):
            raise InputError(f"`Checkpoint(tangent_rule={tangent_rule!r:.60})` must be True or "
                             "False.")
        self.tangent_rule = bool(tangent_rule)

    def for_derivative(self, derivative: tuple | None) -> Checkpoint:
        if wants_route(derivative) and not self.tangent_rule:
            return Checkpoint(self.checkpoints, tangent_rule=True)
        return self

    def refuses(self, chain: tuple[str, ...]) -> str | None:
        if self.tangent_rule:  # reverse over forward sensitivities: jvp, or grad of jvp
            return None if chain in ((), ("forward",), ("forward", "reverse")) else "nested"
        return super().refuses(chain)

    def integrate(self, run: Callable[..., Any], inputs: Any, *, max_steps: int,
                  state_size: int) -> Any:
        adjoint = self.adjoint(max_steps=max_steps, state_size=state_size)
        if self.tangent_rule:
            return solve_with_tangent_rule(run, inputs, adjoint, self.name)
        return run(inputs, adjoint)

    def adjoint(self, *, max_steps: int, state_size: int) -> diffrax.AbstractAdjoint:
        return diffrax.RecursiveCheckpointAdjoint(
            checkpoints=self.checkpoint_count(max_steps=max_steps, state_size=state_size))

    def checkpoint_count(self, *, max_steps: int, state_size: int) -> int:
        """The checkpoints a solve of `max_steps` steps of `state_size` numbers keeps."""
        if self.checkpoints is not None:
            return self.checkpoints
        # a step stores the state plus roughly ten stage vectors of float64
        per_step = max(1, state_size) * 8 * 10
        return max(2, min(max_steps, CHECKPOINT_BUDGET_BYTES // per_step))

    def planned_bytes(self, problem: Any) -> float:
        k = self.checkpoint_count(max_steps=problem.max_steps, state_size=problem.state_size)
        return checkpointed_bytes(problem, k)

    def __repr__(self) -> str:
        return "Checkpoint()" if self.checkpoints is None else f"Checkpoint({self.checkpoints})"

