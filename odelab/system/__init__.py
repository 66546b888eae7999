"""Systems: what is solved. An ODE `System`, a `DelaySystem`, equations typed as text (parsed
safely), and an `Objective` (a system plus the scalar loss the gradient views differentiate)."""

from .delay import DelaySystem as DelaySystem
from .equations import parse_equations as parse_equations
from .objective import Objective as Objective
from .objective import as_objective as as_objective
from .ode import ParamInfo as ParamInfo
from .ode import System as System
from .ode import system as system
