"""The contract every gradient method fulfils: what it can differentiate, and how it solves."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import diffrax

REQUESTS = ("gradient", "jacobian", "jvp", "hvp", "hessian", "vmap-gradient", "nested-gradient")
"""The derivative requests the derivative functions make of the solves inside a user's function
(`Capabilities.supports` answers them)."""


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a gradient method can do; `ol.methods()` shows these as a table.

    reverse / forward: first derivatives by reverse mode (gradients) / forward mode (jvp).
    second_order: the routes by which it gives Hessian-vector products, empty if none.
    nested: the gradient of an objective that itself takes gradients through solves.
    exact: True when it differentiates the discrete solve exactly; False when it approximates
      the continuous derivative (its error then follows the solver tolerance).
    """

    reverse: bool
    forward: bool
    second_order: tuple[str, ...]
    nested: bool
    exact: bool
    memory: str
    cost: str
    stiff: str
    description: str

    def supports(self, request: str) -> bool:
        """Whether the method can serve `request`, one of `REQUESTS` (e.g. "hvp")."""
        if request in ("gradient", "vmap-gradient"):
            return self.reverse or self.forward
        if request == "jacobian":
            return self.reverse or self.forward
        if request == "jvp":
            return self.forward or self.reverse
        if request in ("hvp", "hessian"):
            return bool(self.second_order)
        if request == "nested-gradient":
            return self.nested
        raise ValueError(request)


class GradientMethod(abc.ABC):
    """One way of differentiating through `ol.solve`.

    Subclasses set `name`, `capabilities`, and either `adjoint()` (a diffrax adjoint) or override
    `integrate()` to wrap the solve in their own differentiation rule.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def adjoint(self, *, max_steps: int, state_size: int) -> diffrax.AbstractAdjoint:
        """The diffrax adjoint that differentiates a solve of `max_steps` steps of a state of
        `state_size` numbers the way this method does."""
        raise NotImplementedError

    def integrate(self, run: Callable[..., Any], inputs: Any, *, max_steps: int,
                  state_size: int) -> Any:
        """Run `run(inputs, adjoint)` so that the solve differentiates the way this method does."""
        return run(inputs, self.adjoint(max_steps=max_steps, state_size=state_size))

    def for_derivative(self, derivative: tuple | None) -> GradientMethod:
        """The method a solve runs with when the enclosing derivative call asks for
        `derivative` ((direction, order, route marks...) or None): itself, unless one of its
        second-order routes needs the solve set up differently."""
        return self

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(vars(self).items()))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
