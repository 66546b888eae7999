"""Solvers by name: diffrax's ODE solvers plus odelab's own stiff solvers.

diffrax's KenCarp methods are left out: they are IMEX schemes for problems split into explicit
and implicit parts, and on a whole vector field treated implicitly they stalled in our tests;
the Kværnø ESDIRKs cover that role.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import diffrax
import optimistix as optx

from ..._errors import unknown_name
from ._radau import RadauIIA5
from ._rosenbrock import Rodas5


@dataclasses.dataclass(frozen=True)
class SolverSpec:
    """One named solver: how to build it and what a widget or `solver="auto"` needs to know."""

    name: str
    make: Callable[[], diffrax.AbstractSolver]
    order: int
    stiff: bool
    adaptive: bool
    description: str


def _kvaerno5() -> diffrax.AbstractSolver:
    # diffrax's default root finder (VeryChord) makes Kvaerno5 reject nearly every step on hard
    # stiff problems; a chord method with the controller's tolerances fixes it
    # (odelab/solve/solvers/NOTES.md).
    return diffrax.Kvaerno5(root_finder=diffrax.with_stepsize_controller_tols(optx.Chord)())


def _spec(name, make, order, stiff, description, adaptive=True):
    return SolverSpec(name, make, order, stiff, adaptive, description)


SOLVERS: dict[str, SolverSpec] = {
    s.name: s
    for s in [
        _spec(
            "euler", diffrax.Euler, 1, False, "explicit Euler (fixed steps only)", adaptive=False
        ),
        _spec("heun", diffrax.Heun, 2, False, "Heun's method, 2nd order with an embedded 1st"),
        _spec("midpoint", diffrax.Midpoint, 2, False, "explicit midpoint, 2nd order"),
        _spec("ralston", diffrax.Ralston, 2, False, "Ralston's method, 2nd order"),
        _spec("bosh3", diffrax.Bosh3, 3, False, "Bogacki–Shampine 3(2)"),
        _spec(
            "tsit5", diffrax.Tsit5, 5, False, "Tsitouras 5(4): the default for non-stiff problems"
        ),
        _spec("dopri5", diffrax.Dopri5, 5, False, "Dormand–Prince 5(4)"),
        _spec("dopri8", diffrax.Dopri8, 8, False, "Dormand–Prince 8(7), for tight tolerances"),
        _spec("implicit_euler", diffrax.ImplicitEuler, 1, True, "implicit Euler, L-stable"),
        _spec("kvaerno3", diffrax.Kvaerno3, 3, True, "Kværnø ESDIRK 3(2), L-stable"),
        _spec("kvaerno4", diffrax.Kvaerno4, 4, True, "Kværnø ESDIRK 4(3), L-stable"),
        _spec("kvaerno5", _kvaerno5, 5, True, "Kværnø ESDIRK 5(4), L-stable"),
        _spec("rodas5", Rodas5, 5, True, "Rodas5 Rosenbrock 5(4): no Newton iteration, one LU "
              "per step; the first choice for small stiff systems"),
        _spec("radau5", RadauIIA5, 5, True, "Radau IIA 5 (RADAU5): implicit collocation, for "
              "very stiff problems and tight tolerances"),
    ]
}

DEFAULT_EXPLICIT = "tsit5"
DEFAULT_STIFF = "rodas5"


def register_solver(spec: SolverSpec) -> None:
    """Make a solver available by name to `ol.solve(..., solver=name)` and the widgets."""
    SOLVERS[spec.name] = spec


def solver_spec(name: str) -> SolverSpec:
    """The spec for `name`, or an InputError suggesting the closest known name."""
    if not isinstance(name, str):
        raise unknown_name("solver", name, list(SOLVERS) + ["auto"])
    key = name.lower().replace("-", "_")
    if key not in SOLVERS:
        raise unknown_name("solver", name, list(SOLVERS) + ["auto"])
    return SOLVERS[key]


def solver_names(stiff: bool | None = None) -> list[str]:
    """Known solver names, optionally only the stiff (True) or explicit (False) ones."""
    return [n for n, s in SOLVERS.items() if stiff is None or s.stiff == stiff]
