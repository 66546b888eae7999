"""`forward-sensitivity`: the sensitivity equations integrated with the state, errors controlled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..solve.gradient_method import Capabilities, GradientMethod
from .interpolating import primitive_or_direct


class ForwardSensitivity(GradientMethod):
    """Forward mode by the forward sensitivity equations s' = (∂f/∂y)s + (∂f/∂p)ṗ.

    Unlike `forward` (autodiff through the solver's steps, whose step sizes follow the state
    only), the sensitivities are part of the integrated state: the step-size controller's error
    norm covers them, so derivatives are as accurate as the state, also on stiff problems.
    Gradients cost one sensitivity solve per parameter (vmapped), so this suits few parameters;
    `ol.gradient` uses the forward route with it. It shares its primitive with `interpolating`,
    so jax.grad (by the interpolating adjoint), HVPs and Hessians work too.
    """

    name = "forward-sensitivity"
    uses_config = True
    prefers = "forward"
    capabilities = Capabilities(
        reverse=True,
        forward=True,
        second_order=("forward-over-forward", "forward-over-reverse"),
        nested=False,
        exact=False,
        memory="O(1) in steps (forward route)",
        cost="≈ 2–3 solves per parameter direction",
        stiff="good: step control covers the sensitivities",
        description="Forward sensitivity equations integrated with the state, the step-size "
        "controller covering both; composes with jvp, vmap, hessian.",
    )

    def integrate(self, run: Callable[..., Any], inputs: Any, *, max_steps: int,
                  state_size: int, config: Any = None) -> Any:
        return primitive_or_direct(run, inputs, config)

    def planned_bytes(self, problem: Any) -> float:
        # one tangent of the solve per parameter direction (a gradient: every parameter)
        return problem.solve_bytes * (1 + problem.n_params)
