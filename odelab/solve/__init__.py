"""Solving: one `solve` front for ODEs and delay equations, and what it is built from.

    settings      the arguments resolved once (static vs traced), defaults from the context
    defaults      what derivative calls and the session lay over the solves inside them
    auto          everything "auto" means: solver, derivative route, method
    ode, delay    the integrators (one compiled program per static configuration)
    method_of_steps  the interval sweep delay equations are solved by
    gradient_method  the contract gradient methods fulfil, and the methods by name
    failures      why a solve failed, in words; transforms a method cannot take
    solution      the Solution a solve returns
    solvers/      solvers by name, and odelab's Rosenbrock and Radau IIA solvers
"""

from .._compilations import trace_count as trace_count
from .auto import choose_method as choose_method
from .auto import choose_route as choose_route
from .auto import choose_solver as choose_solver
from .defaults import SolveDefaults as SolveDefaults
from .defaults import current as current
from .defaults import record as record
from .defaults import recording as recording
from .defaults import session_defaults as session_defaults
from .defaults import set_session_defaults as set_session_defaults
from .defaults import solve_defaults as solve_defaults
from .defaults import tolerances_used as tolerances_used
from .front import solve as solve
from .gradient_method import METHODS as METHODS
from .gradient_method import REQUEST_ORDER as REQUEST_ORDER
from .gradient_method import REQUESTS as REQUESTS
from .gradient_method import REVERSE_OVER_FORWARD as REVERSE_OVER_FORWARD
from .gradient_method import Capabilities as Capabilities
from .gradient_method import GradientMethod as GradientMethod
from .gradient_method import method_names as method_names
from .gradient_method import method_object as method_object
from .gradient_method import register_method as register_method
from .gradient_method import wants_reverse_over_forward as wants_reverse_over_forward
from .settings import DEFAULT_ATOL as DEFAULT_ATOL
from .settings import DEFAULT_MAX_STEPS as DEFAULT_MAX_STEPS
from .settings import DEFAULT_RTOL as DEFAULT_RTOL
from .settings import DEFAULT_SAVE_POINTS as DEFAULT_SAVE_POINTS
from .solution import Solution as Solution
from .solution import result_name as result_name
from .solvers import DEFAULT_EXPLICIT as DEFAULT_EXPLICIT
from .solvers import DEFAULT_STIFF as DEFAULT_STIFF
from .solvers import SOLVERS as SOLVERS
from .solvers import solver_names as solver_names
from .solvers import solver_spec as solver_spec
