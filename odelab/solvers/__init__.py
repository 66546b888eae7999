"""odelab's own stiff solvers, usable directly with `diffrax.diffeqsolve`.

    >>> import diffrax
    >>> from odelab.solvers import Rodas5
    >>> sol = diffrax.diffeqsolve(diffrax.ODETerm(f), Rodas5(), t0, t1, dt0, y0,
    ...                           stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-10))
"""

from ._radau import RadauIIA5 as RadauIIA5
from ._rosenbrock import Rodas5 as Rodas5


def register_all() -> None:
    """Make "rodas5" and "radau5" available by name to `ol.solve(..., solver=...)`."""
    from .._solvers import SolverSpec, register_solver

    register_solver(
        SolverSpec(
            "rodas5",
            Rodas5,
            5,
            True,
            True,
            "Rodas5 Rosenbrock 5(4): no Newton iteration, one LU per step; the first choice "
            "for small stiff systems",
        )
    )
    register_solver(
        SolverSpec(
            "radau5",
            RadauIIA5,
            5,
            True,
            True,
            "Radau IIA 5 (RADAU5): implicit collocation, for very stiff problems and tight "
            "tolerances",
        )
    )
