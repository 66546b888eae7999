"""The plan of a derivative: what is asked (request), by which method, along which JAX route.

`make_plan` checks the request against the method's declared capabilities before anything is
traced (a `MethodError` with the way out when it cannot serve it), resolves `"auto"` (one place:
`odelab.solve.auto`), and returns a `Plan`: a hashable description that names the compiled
program. `ol.gradient` and friends, `ol.fit`, the gradient check and the explorer all plan the
same way.

    >>> plan, diff, static = make_plan("gradient", params, method="auto")
    >>> plan.route, plan.describe()
    (('forward', 1), 'gradient of 3 parameters: forward mode (auto)')
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import numpy as np

from .._errors import InputError, MethodError
from .._inputs import (
    as_params,
    check_count,
    check_flag,
    check_memory_budget,
    check_param_leaves,
    check_params_finite,
    set_memory_budget,
)
from ..solve import defaults
from ..solve.auto import choose_route
from ..solve.failures import ad_chain
from ..solve.gradient_method import (
    METHODS,
    REQUEST_ORDER,
    REVERSE_OVER_FORWARD,
    GradientMethod,
    method_object,
)
from ..solve.solvers import solver_spec

REQUEST_WORDS = {
    "gradient": "gradients",
    "jacobian": "Jacobians",
    "jvp": "Jacobian-vector products",
    "hvp": "Hessian-vector products",
    "hessian": "Hessians",
    "nested-gradient": "gradients of objectives that themselves take gradients through solves",
}
SCALAR_REQUESTS = ("gradient", "hvp", "hessian")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one derivative is computed; hashable, it names the compiled program.

    request: "gradient", "jacobian", "jvp", "hvp" or "hessian".
    method: the GradientMethod laid over the solves in `fun`, or "auto" (each solve picks the
      method for `route`).
    route: (direction, order, *marks): forward or reverse mode, the derivative order the solves
      see, and `REVERSE_OVER_FORWARD` when second order goes reverse over forward sensitivities.
    finite_difference: (step, richardson) when the method is finite differences of `fun`.
    max_steps: the step budget of the solves inside `fun` that do not name theirs (static: a
      new budget compiles a new program), None for theirs.
    memory_budget: the memory budget (bytes) "auto" plans the solves within, None for the
      default (static: it can change the plan of the solves).
    """

    request: str
    method: Any
    route: tuple
    solver: Any = None
    has_aux: bool = False
    finite_difference: tuple | None = None
    static: Any = None  # the non-differentiable part of params (activation functions, ...)
    max_steps: int | None = None  # the step budget laid over the solves (None: their own)
    memory_budget: float | None = None  # bytes "auto" plans the solves within (None: default)
    n_params: int = dataclasses.field(default=0, compare=False)
    nested: bool = dataclasses.field(default=False, compare=False)

    @property
    def over_forward(self) -> bool:
        """Whether second order goes reverse over forward sensitivities."""
        return REVERSE_OVER_FORWARD in self.route[2:]

    @property
    def forward(self) -> bool:
        return self.route[0] == "forward"

    @property
    def solve_method(self) -> Any:
        """The method laid over the solves inside `fun` (None: each solve decides, "auto")."""
        if self.finite_difference is not None or self.method == "auto":
            return None
        return self.method

    @property
    def solve_route(self) -> tuple | None:
        """The derivative route the solves inside `fun` are told (None: they are not
        differentiated by AD, as under finite differences)."""
        return None if self.finite_difference is not None else self.route

    def describe(self) -> str:
        """The plan in words, e.g. "gradient of 3 parameters: forward mode (auto)"."""
        name = self.method if isinstance(self.method, str) else self.method.name
        if self.finite_difference is not None:
            how = "central finite differences" + (
                " with Richardson extrapolation" if self.finite_difference[1] else "")
        elif self.over_forward:
            how = "reverse mode over forward sensitivities"
        elif self.route[1] >= 2:
            how = f"{self.route[0]} mode, order {self.route[1]}"
        else:
            how = f"{self.route[0]} mode"
        return f"{self.request} of {self.n_params} parameters: {how} ({name})"


def split_params(params: Any) -> tuple[Any, Any]:
    """(the float leaves that are differentiated, the rest) of `params`, checked."""
    if isinstance(params, bool) or params is None:
        raise InputError(f"`params` must be numbers or a pytree of float arrays; got {params!r}.")
    check_param_leaves(params)
    params = as_params(params)
    diff, static = eqx.partition(params, eqx.is_inexact_array)
    check_params_finite(diff)  # concrete leaves; traced ones pass
    if not jax.tree_util.tree_leaves(diff):
        raise InputError(
            "`params` has no floating-point values to differentiate. Pass the parameters as "
            "floats (e.g. dict(a=1.0)) or float arrays."
        )
    return diff, static


def count_params(diff: Any) -> int:
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(diff)))


def able_methods(request: str, kinds: tuple[str, ...] | None = None) -> list[str]:
    """The names of the methods that can serve `request` (for a system of one of `kinds`)."""
    if kinds is None:
        return [n for n, cls in METHODS.items() if cls.capabilities.supports(request)]
    return [n for n, cls in METHODS.items()
            if any(k in cls.applies_to and cls.capabilities.supports(request, k) for k in kinds)]


def outer_order(diff: Any) -> int:
    """The derivative order already taken of this call from outside: the enclosing odelab
    derivative call's, else that of the JAX reverse-mode transforms (a user's jax.grad around
    steps of ol.gradient) tracing the parameters; 0 for a call on its own."""
    outer = defaults.current()
    if outer.derivative is not None:
        return outer.derivative[1]
    chain = ad_chain(diff)
    return len(chain) if "reverse" in chain else 0


def _checked_method(method: Any, request: str,
                    nested: bool) -> tuple[GradientMethod | None, str, bool]:
    """(method object or None for "auto", effective request, nested) after the capability check."""
    outer = defaults.current()
    if method is None or (isinstance(method, str) and method.lower() == "auto"):
        method = outer.method if nested and outer.method is not None else "auto"
    obj = method_object(method)
    effective = "nested-gradient" if nested else request
    if obj == "auto":
        return None, effective, nested
    if not obj.capabilities.supports(effective):
        # the methods for the systems this one is for (a delay-only method: delay methods)
        kinds = tuple(obj.applies_to)
        able = ", ".join(repr(n) for n in able_methods(effective, kinds)) or "none yet"
        if kinds == ("delay",):
            able += " (those that apply to delay equations)"
        why = {
            "hvp": "it has no second-order route",
            "hessian": "it has no second-order route",
            "nested-gradient": "its backward pass cannot itself be differentiated",
        }.get(effective, "it does not support that direction")
        raise MethodError(
            f"`method={obj.name!r}` cannot give {REQUEST_WORDS[effective]}: {why}. Methods "
            f"that can: {able}."
        )
    return obj, effective, nested


def method_route(obj: GradientMethod, request: str) -> tuple:
    """The route a given method serves `request` by: its own when it has only one."""
    direction, order = REQUEST_ORDER[request]
    caps = obj.capabilities
    if order >= 2:
        if any("over-reverse" in r for r in caps.second_order):
            return "reverse", order
        if REVERSE_OVER_FORWARD in caps.second_order:
            return "reverse", order, REVERSE_OVER_FORWARD
        return "forward", order
    if obj.prefers == "forward" and caps.forward and request in ("gradient", "jacobian"):
        return "forward", order
    if direction == "reverse" and not caps.reverse:
        return "forward", order
    if direction == "forward" and not caps.forward:
        return "reverse", order
    return direction, order


def _static_key(static: Any) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(static)
    return treedef, tuple(identity(x) for x in leaves)


def identity(x: Any) -> Any:
    """A hashable stand-in for x: x itself when hashable, else its id (the caller keeps x alive)."""
    try:
        hash(x)
    except TypeError:
        return ("id", id(x))
    return x


def make_plan(request: str, params: Any, method: Any = "auto", *, solver: Any = None,
              has_aux: bool = False, max_steps: int | None = None,
              memory_budget: Any = None) -> tuple[Plan, Any, Any]:
    """(Plan, differentiable params, the rest) for a derivative `request` of `params`.

    Raises MethodError before anything is traced when `method` cannot serve the request.
    """
    if request not in REQUEST_ORDER:
        raise InputError(f"`request={request!r}` is not known; one of {', '.join(REQUEST_ORDER)}.")
    max_steps = check_count("max_steps", max_steps, example=100000)
    has_aux = check_flag("has_aux", has_aux)
    # a set budget (this call's, else the enclosing call's or session's, else the
    # environment's) is part of the plan, so changing it compiles anew; the default one (free
    # memory) is read when the solves are traced
    memory_budget = set_memory_budget(
        check_memory_budget(memory_budget), defaults.current().memory_budget)
    diff, static = split_params(params)
    n = count_params(diff)
    if solver is not None and not (isinstance(solver, str) and solver.lower() == "auto"):
        # checked now: a solve inside `fun` that names its own solver would never read it
        solver_spec(solver)
    taken = outer_order(diff)
    obj, effective, nested = _checked_method(method, request, taken > 0)
    if nested:
        # reverse mode goes through this call from outside: its solves must take it again
        route = ("reverse", taken + REQUEST_ORDER[request][1])
    elif obj is not None:
        route = method_route(obj, request)
    else:
        route = choose_route(request, n, nested)
    fd = (obj.step, obj.richardson) if obj is not None and obj.name == "finite-difference" else None
    plan = Plan(request, obj if obj is not None else "auto", route, solver, has_aux, fd,
                _static_key(static), max_steps, memory_budget, n_params=n, nested=nested)
    return plan, diff, static
