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
from ._compilations import compile_count as compile_count
from ._compilations import compile_seconds as compile_seconds
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
from ._solve import solve as solve
from ._solve import trace_count as trace_count
from ._solvers import solver_names as solver_names
from .solvers import register_all as _register_stiff_solvers

_register_stiff_solvers()
from .methods import methods as methods

# Names whose modules are heavier (Panel, optax) or optional are imported on first use.
_LAZY = {
    "gallery": (".gallery", None),
    "check_gradient": ("._check", "check_gradient"),
    "GradientReport": ("._check", "GradientReport"),
    "inspect_adjoint": ("._check", "inspect_adjoint"),
    "hessian_spectrum": ("._spectra", "hessian_spectrum"),
    "Spectrum": ("._spectra", "Spectrum"),
    "gradient_field": ("._fields", "gradient_field"),
    "solve_ensemble": ("._fields", "solve_ensemble"),
    "fit": ("._fit", "fit"),
    "FitResult": ("._fit", "FitResult"),
    "newton_krylov": ("._fit", "newton_krylov"),
    "bilevel": ("._bilevel", None),
    "DelaySystem": ("._delay", "DelaySystem"),
    "explore": (".ui", "explore"),
    "Objective": (".ui.objective", "Objective"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name, __name__)
        value = module if attr is None else getattr(module, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'odelab' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


def _jupyter_labextension_paths():
    """Where JupyterLab finds odelab's prebuilt extension (for `jupyter labextension develop`)."""
    return [{"src": "labextension", "dest": "odelab"}]


from . import _lab as _lab  # noqa: E402

_lab.activate()  # inside a Jupyter kernel: open the comm the JupyterLab extension talks to
