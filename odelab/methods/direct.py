"""`direct`: differentiate the unrolled solver directly (any transform, memory-hungry)."""

from __future__ import annotations

from typing import Any

import diffrax

from ..solve.gradient_method import Capabilities, GradientMethod


class Direct(GradientMethod):
    """Plain autodiff through a bounded loop over the solver's steps.

    Every JAX transform works (jvp, grad, hessian, grad of grad), at the price of memory that
    grows with `max_steps` and a slower forward solve. The baseline others are measured against.
    """

    name = "direct"
    applies_to = ("ode", "delay")
    capabilities = Capabilities(
        reverse=True,
        forward=True,
        second_order=("forward-over-reverse", "reverse-over-reverse", "forward-over-forward"),
        nested=True,
        exact=True,
        memory="O(max_steps × state)",
        cost="gradient ≈ 20–70 solves; HVP ≈ 1.3× its gradient",
        stiff="fine: exact gradient of whatever the solver computed",
        description="Autodiff through the unrolled solver (diffrax DirectAdjoint): composes with "
        "every transform.",
    )

    def adjoint(self, *, max_steps: int, state_size: int) -> diffrax.AbstractAdjoint:
        return diffrax.DirectAdjoint()

    def planned_bytes(self, problem: Any) -> float:
        # the unrolled loop's nested checkpoints, measured not to grow with max_steps: a fixed
        # working set and the stages of state and parameters several times over
        n, item = problem.state_size, problem.itemsize
        return (problem.solve_bytes + 6144 * item
                + 16 * (problem.stages + 2) * (n + problem.n_params) * item)
