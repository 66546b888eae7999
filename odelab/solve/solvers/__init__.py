"""Solvers by name (diffrax's ODE solvers and odelab's own), and odelab's stiff solvers.

odelab's Rosenbrock (`Rodas5`) and Radau IIA (`RadauIIA5`) solvers are diffrax solvers, usable
directly with `diffrax.diffeqsolve`:

    >>> import diffrax
    >>> from odelab.solvers import Rodas5
    >>> sol = diffrax.diffeqsolve(diffrax.ODETerm(f), Rodas5(), t0, t1, dt0, y0,
    ...                           stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-10))
"""

from ._radau import RadauIIA5 as RadauIIA5
from ._rosenbrock import Rodas5 as Rodas5
from .names import DEFAULT_EXPLICIT as DEFAULT_EXPLICIT
from .names import DEFAULT_STIFF as DEFAULT_STIFF
from .names import SOLVERS as SOLVERS
from .names import SolverSpec as SolverSpec
from .names import register_solver as register_solver
from .names import solver_names as solver_names
from .names import solver_spec as solver_spec
