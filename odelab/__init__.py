"""odelab: a lab for differentiable ODE models. Solve, differentiate, check and explore.

    >>> import odelab as ol
    >>> sys = ol.gallery.lotka_volterra()
    >>> sol = ol.solve(sys)
    >>> g = ol.gradient(lambda p: ol.solve(sys, params=p).ys[-1, 0], sys.params)

The package, by what each part does (imports run one way, down this list):

    system/       what is solved: System, DelaySystem, equations as text, Objective
    solve/        the one solve front, the ODE and delay integrators, solvers, "auto"
    methods/      gradient methods, one per module
    derivatives/  gradient, jvp, hvp, hessian, ...: plans and compiled programs
    analysis/     check_gradient, spectra, fields, fit, bilevel problems
    gallery/      classic systems, ready to solve
    lab/, ui/     the JupyterLab bridge and the Panel explorer (loaded when used)
    cli.py        the `odelab` command
"""

import sys as _sys  # noqa: E402

from . import _config as _config  # float64, the compilation cache, equinox's error mode
from ._compilations import cache_hit_count as cache_hit_count
from ._compilations import compile_count as compile_count
from ._compilations import compile_seconds as compile_seconds
from ._compilations import trace_count as trace_count
from ._errors import EquationError as EquationError
from ._errors import InputError as InputError
from ._errors import MethodError as MethodError
from ._errors import OdelabError as OdelabError
from ._errors import SolveError as SolveError
from ._errors import VectorFieldError as VectorFieldError
from ._version import __version__ as __version__
from .derivatives import flat_names as flat_names
from .derivatives import gradient as gradient
from .derivatives import hessian as hessian
from .derivatives import hvp as hvp
from .derivatives import jacobian as jacobian
from .derivatives import jvp as jvp
from .derivatives import value_and_gradient as value_and_gradient
from .methods import methods as methods
from .solve import Solution as Solution
from .solve import solve as solve
from .solve import solver_names as solver_names
from .solve import solvers as solvers
from .system import DelaySystem as DelaySystem
from .system import Objective as Objective
from .system import ParamInfo as ParamInfo
from .system import System as System
from .system import system as system

# `import odelab.solvers` / `from odelab.solvers import Rodas5` keep working: the solvers now
# live in odelab/solve/solvers.
_sys.modules.setdefault(__name__ + ".solvers", solvers)

# Names whose modules are heavier (Panel, optax, scipy) are imported on first use.
_LAZY = {
    "gallery": (".gallery", None),
    "check_gradient": (".analysis.check", "check_gradient"),
    "GradientReport": (".analysis.check", "GradientReport"),
    "inspect_adjoint": (".analysis.inspect", "inspect_adjoint"),
    "hessian_spectrum": (".analysis.spectra", "hessian_spectrum"),
    "Spectrum": (".analysis.spectra", "Spectrum"),
    "gradient_field": (".analysis.fields", "gradient_field"),
    "solve_ensemble": (".analysis.fields", "solve_ensemble"),
    "fit": (".analysis.fit", "fit"),
    "FitResult": (".analysis.fit", "FitResult"),
    "newton_krylov": (".analysis.fit", "newton_krylov"),
    "bilevel": (".analysis.bilevel", None),
    "distributed": (".distributed", None),
    "explore": (".ui", "explore"),
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


def _in_kernel() -> bool:
    """Whether odelab runs inside a Jupyter kernel (where the JupyterLab bridge is wanted)."""
    ipython = _sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


if _in_kernel():  # the sidebar and status bar talk to the kernel through the lab bridge
    from .lab import activate as _activate_lab

    _activate_lab()
