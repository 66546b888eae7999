"""odelab: a lab for differentiable ODE models. Solve, differentiate, check and explore.

    >>> import odelab as ol
    >>> sys = ol.gallery.lotka_volterra()
    >>> sol = ol.solve(sys)
    >>> g = ol.gradient(lambda p: ol.solve(sys, params=p).ys[-1, 0], sys.params)
"""

from . import _config as _config  # noqa: F401  (enables float64 and the compilation cache)
from ._errors import (
    EquationError as EquationError,
)
from ._errors import (
    InputError as InputError,
)
from ._errors import (
    MethodError as MethodError,
)
from ._errors import (
    OdelabError as OdelabError,
)
from ._errors import (
    SolveError as SolveError,
)
from ._errors import (
    VectorFieldError as VectorFieldError,
)
from ._system import ParamInfo as ParamInfo
from ._system import System as System
from ._system import system as system

__version__ = "0.1.0"
from ._derivatives import (
    flat_names as flat_names,
)
from ._derivatives import (
    gradient as gradient,
)
from ._derivatives import (
    hessian as hessian,
)
from ._derivatives import (
    hvp as hvp,
)
from ._derivatives import (
    jacobian as jacobian,
)
from ._derivatives import (
    jvp as jvp,
)
from ._derivatives import (
    value_and_gradient as value_and_gradient,
)
from ._solution import Solution as Solution
from ._solve import compile_count as compile_count
from ._solve import solve as solve
from ._solvers import solver_names as solver_names
from .methods import methods as methods
