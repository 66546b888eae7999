"""odelab: a lab for differentiable ODE models. Solve, differentiate, check and explore.

    >>> import odelab as ol
    >>> sys = ol.gallery.lotka_volterra()
    >>> sol = ol.solve(sys)
    >>> g = ol.gradient(lambda p: ol.solve(sys, params=p).ys[-1, 0], sys.params)
"""

from . import _config as _config  # noqa: F401  (enables float64 and the compilation cache)
from ._errors import (
    EquationError as EquationError,
    InputError as InputError,
    MethodError as MethodError,
    OdelabError as OdelabError,
    SolveError as SolveError,
    VectorFieldError as VectorFieldError,
)
from ._system import ParamInfo as ParamInfo, System as System, system as system

__version__ = "0.1.0"
from ._solve import compile_count as compile_count, solve as solve
from ._solution import Solution as Solution
from ._solvers import solver_names as solver_names
