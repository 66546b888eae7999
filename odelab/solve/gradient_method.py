"""The contract between the solve front and the gradient methods, and the methods by name.

A gradient method says what it can differentiate (`Capabilities`), which kinds of system it
applies to, and how it runs a solve so that the solve differentiates its way (`integrate`). The
concrete methods live in `odelab.methods` and register here by name; the solve front and the
derivative functions look them up with `method_object` and never import them.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import diffrax

from .._errors import InputError, unknown_name

REQUESTS = ("gradient", "jacobian", "jvp", "hvp", "hessian", "vmap-gradient", "nested-gradient")
"""The derivative requests the derivative functions make of the solves inside a user's function
(`Capabilities.supports` answers them)."""

REQUEST_ORDER = {
    "gradient": ("reverse", 1),
    "jacobian": ("reverse", 1),
    "jvp": ("forward", 1),
    "hvp": ("reverse", 2),  # forward-over-reverse unless a method only goes forward
    "hessian": ("reverse", 2),
}
"""What each derivative function asks of the solves: (direction, order)."""

REVERSE_OVER_FORWARD = "reverse-over-forward"
"""The mark a derivative route carries when its solves should take reverse mode over forward
sensitivities (second order for reverse-only methods: see methods/_over_forward.py)."""

SYSTEM_KINDS = ("ode", "delay")


def wants_reverse_over_forward(route: Any) -> bool:
    """Whether the derivative route in force asks the solves for reverse over forward."""
    return route is not None and REVERSE_OVER_FORWARD in tuple(route)[2:]


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

    def second_order_for(self, kind: str) -> tuple[str, ...]:
        """The second-order routes for a system of `kind`: reverse over forward sensitivities
        sets up ODE solves only (`GradientMethod.for_derivative`), not delay solves."""
        if kind == "delay":
            return tuple(r for r in self.second_order if r != REVERSE_OVER_FORWARD)
        return self.second_order

    def supports(self, request: str, kind: str | None = None) -> bool:
        """Whether the method can serve `request`, one of `REQUESTS` (e.g. "hvp"), for a
        system of `kind` ("ode", "delay"; None: for either)."""
        if request in ("hvp", "hessian") and kind is not None:
            return bool(self.second_order_for(kind))
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
    `integrate()` to wrap the solve in their own differentiation rule. `applies_to` names the
    kinds of system ("ode", "delay") the method can differentiate; a delay solve differentiates
    through the method of steps with `adjoint()` unless the method overrides `integrate_delay`.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    applies_to: ClassVar[tuple[str, ...]] = ("ode",)
    uses_config: ClassVar[bool] = False  # `integrate` receives the static solve configuration
    prefers: ClassVar[str | None] = None  # "forward" or "reverse" for first derivatives

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = set(getattr(cls, "applies_to", ())) - set(SYSTEM_KINDS)
        if unknown:
            raise TypeError(f"{cls.__name__}.applies_to names unknown kinds {sorted(unknown)}")

    def adjoint(self, *, max_steps: int, state_size: int) -> diffrax.AbstractAdjoint:
        """The diffrax adjoint that differentiates a solve of `max_steps` steps of a state of
        `state_size` numbers the way this method does."""
        raise NotImplementedError

    def integrate(self, run: Callable[..., Any], inputs: Any, *, max_steps: int,
                  state_size: int) -> Any:
        """Run `run(inputs, adjoint)` so that the solve differentiates the way this method does."""
        return run(inputs, self.adjoint(max_steps=max_steps, state_size=state_size))

    def integrate_delay(self, problem: Any) -> Any:
        """Run a delay solve (`odelab.solve.delay.DelayProblem`, the method of steps) so that it
        differentiates this way: by default, its sweep under this method's diffrax adjoint."""
        return problem.sweep_with(
            self.adjoint(max_steps=problem.max_steps, state_size=problem.state_size))

    def planned_bytes(self, problem: Any) -> float | None:
        """The memory (bytes) a gradient through a solve of `problem` (`memory.MemoryProblem`)
        is planned to hold with this method, None when the method does not say. Use
        `odelab.solve.memory.planned_memory`, which calls this."""
        return None

    def refuses(self, chain: tuple[str, ...]) -> str | None:
        """The kind of differentiation ("forward", "reverse" or "nested") this method cannot take
        among the JAX transforms `chain` tracing a solve (innermost first), or None."""
        c = self.capabilities
        if "forward" in chain and not c.forward:
            return "forward"
        if "reverse" in chain and not c.reverse:
            return "reverse"
        if chain.count("reverse") >= 2 and not c.nested:
            return "nested"
        return None

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


METHODS: dict[str, type[GradientMethod]] = {}
"""Every gradient method by name: what `method=` accepts besides "auto"."""


def register_method(cls: type[GradientMethod]) -> type[GradientMethod]:
    """Make a method available by its `name` to every solve, derivative function and widget."""
    METHODS[cls.name] = cls
    return cls


def method_names(kind: str | None = None) -> list[str]:
    """The registered method names (for one kind of system, "ode" or "delay", if given)."""
    return [n for n, cls in METHODS.items() if kind is None or kind in cls.applies_to]


def method_object(method: Any) -> GradientMethod | str:
    """A GradientMethod instance for `method` (a name or an instance); "auto" stays a string."""
    if isinstance(method, GradientMethod):
        return method
    if isinstance(method, type) and issubclass(method, GradientMethod):
        return method()
    if isinstance(method, str):
        key = method.lower().replace("_", "-")
        if key == "auto":
            return "auto"
        if key in METHODS:
            return METHODS[key]()
    if not isinstance(method, str):
        raise InputError(
            f"`method` must be a name such as 'checkpoint' or a method object; got "
            f"{type(method).__name__}."
        )
    raise unknown_name("method", method, list(METHODS) + ["auto"])
