"""Gradient methods: how derivatives flow through `ol.solve`. One module per method.

Each module defines one method class and registers it by name with the solve front
(`odelab.solve.gradient_method`), which holds the contract every method fulfils.
"""

from __future__ import annotations

from typing import Any

from ..solve.gradient_method import (
    METHODS,
    REQUESTS,
    Capabilities,
    GradientMethod,
    method_names,
    method_object,
    register_method,
)
from ..solve.memory import MemoryProblem, planned_text
from .backsolve import Backsolve
from .checkpoint import Checkpoint
from .delay_adjoint import DelayAdjoint
from .direct import Direct
from .finite_difference import FiniteDifference
from .forward import Forward
from .forward_sensitivity import ForwardSensitivity
from .interpolating import Interpolating
from .table import MethodRow, MethodTable

for _cls in (Checkpoint, Direct, Backsolve, Forward, FiniteDifference, Interpolating,
             ForwardSensitivity, DelayAdjoint):
    register_method(_cls)

__all__ = [
    "REQUESTS", "Capabilities", "GradientMethod", "METHODS", "Checkpoint", "Direct", "Backsolve",
    "Forward", "FiniteDifference", "Interpolating", "ForwardSensitivity", "DelayAdjoint",
    "register_method", "method_object", "method_names", "methods",
]


def methods(kind: str | None = None, *, system: Any = None, max_steps: int | None = None,
            saveat: int | None = None):
    """The capability table of every gradient method (what `method=` accepts).

    kind: "ode" or "delay" to list only the methods that apply to that kind of system.
    system: with an ol.System, a "planned memory" column: what a gradient of its solve (its
      states and parameters, `max_steps` steps, `saveat` save points) would hold with each
      method, the estimate `method="auto"` fits to its memory budget
      (`odelab.solve.memory.planned_memory`).
    The method classes hang off this function too, for settings a name cannot carry:
    `method=ol.methods.Checkpoint(checkpoints=32)` (less memory, more recomputation),
    `ol.methods.FiniteDifference(step=1e-4)`.
    """
    problem = None
    if system is not None:
        kind = kind or getattr(system, "kind", "ode")
        problem = MemoryProblem.of(system, max_steps=max_steps, n_save=saveat)
    return MethodTable([MethodRow(name, cls.capabilities, cls.applies_to,
                                  None if problem is None else planned_text(cls(), problem))
                        for name, cls in METHODS.items()
                        if kind is None or kind in cls.applies_to])


for _cls in (Checkpoint, Direct, Backsolve, Forward, FiniteDifference, Interpolating,
             ForwardSensitivity, DelayAdjoint):
    setattr(methods, _cls.__name__, _cls)
del _cls
