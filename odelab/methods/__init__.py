"""Gradient methods: how derivatives flow through `ol.solve`. One module per method."""

from __future__ import annotations

from typing import Any

from .._errors import InputError, unknown_name
from .backsolve import Backsolve
from .base import REQUESTS, Capabilities, GradientMethod
from .checkpoint import Checkpoint
from .direct import Direct
from .finite_difference import FiniteDifference
from .forward import Forward
from .forward_sensitivity import ForwardSensitivity
from .interpolating import Interpolating

METHODS: dict[str, type[GradientMethod]] = {
    cls.name: cls
    for cls in (Checkpoint, Direct, Backsolve, Forward, FiniteDifference, Interpolating,
                ForwardSensitivity)
}
"""Every gradient method by name: what `method=` accepts besides "auto" (`register_method` adds)."""

__all__ = [
    "REQUESTS", "Capabilities", "GradientMethod", "METHODS", "Checkpoint", "Direct", "Backsolve",
    "Forward", "FiniteDifference", "Interpolating", "ForwardSensitivity", "register_method",
    "method_object",
]


def register_method(cls: type[GradientMethod]) -> type[GradientMethod]:
    """Make a method available by its `name` to every derivative function and widget."""
    METHODS[cls.name] = cls
    return cls


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


def methods():
    """The capability table of every gradient method (what `method=` accepts).

    The method classes hang off this function too, for settings a name cannot carry:
    `method=ol.methods.Checkpoint(checkpoints=32)` (less memory, more recomputation),
    `ol.methods.FiniteDifference(step=1e-4)`.
    """
    from .. import _delay_adjoint  # noqa: F401  (registers "delay-adjoint")
    from .table import MethodRow, MethodTable

    return MethodTable([MethodRow(name, cls.capabilities) for name, cls in METHODS.items()])


for _cls in (Checkpoint, Direct, Backsolve, Forward, FiniteDifference, Interpolating,
             ForwardSensitivity):
    setattr(methods, _cls.__name__, _cls)
del _cls
