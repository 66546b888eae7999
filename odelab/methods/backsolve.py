"""`backsolve`: continuous adjoint, the state re-integrated backward in time."""

from __future__ import annotations

from typing import Any

import diffrax

from ..solve.gradient_method import Capabilities, GradientMethod


class Backsolve(GradientMethod):
    """Optimise-then-discretise: solve the adjoint ODE backward together with the state.

    Constant memory in the number of steps, but the backward re-integration of the state is
    unstable on stiff and chaotic problems, and the gradient only approximates the continuous
    one to about the solver tolerance.
    """

    name = "backsolve"
    capabilities = Capabilities(
        reverse=True,
        forward=False,
        second_order=(),
        nested=False,
        exact=False,
        memory="O(1) in steps",
        cost="gradient ≈ 3–9 solves",
        stiff="avoid: re-integrating a stiff or chaotic state backward is unstable",
        description="Continuous adjoint with the state re-integrated backward "
        "(diffrax BacksolveAdjoint).",
    )

    def adjoint(self, *, max_steps: int, state_size: int) -> diffrax.AbstractAdjoint:
        return diffrax.BacksolveAdjoint()

    def planned_bytes(self, problem: Any) -> float:
        # the backward solve's state: state, adjoint and parameter cotangent, with its stages
        n, item = problem.state_size, problem.itemsize
        return (problem.solve_bytes + 512 * item
                + 2 * (problem.stages + 4) * (2 * n + problem.n_params) * item)
