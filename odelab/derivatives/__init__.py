"""Derivatives of a user's objective `fun(params)` that calls `ol.solve` inside.

    plan                request → method → route (`make_plan`, the public `Plan`)
    programs            the builders per request and route, and the one cache of programs
    finite_difference   differences of the whole objective, one step rule
    functions           gradient, value_and_gradient, jacobian, jvp, hvp, hessian, flat_names
"""

from .finite_difference import Estimate as Estimate
from .functions import difference_estimate as difference_estimate
from .functions import flat_names as flat_names
from .functions import gradient as gradient
from .functions import hessian as hessian
from .functions import hvp as hvp
from .functions import jacobian as jacobian
from .functions import jvp as jvp
from .functions import tangent_like as tangent_like
from .functions import value_and_gradient as value_and_gradient
from .plan import Plan as Plan
from .plan import count_params as count_params
from .plan import make_plan as make_plan
from .plan import split_params as split_params
from .programs import compiled as compiled
from .programs import forget as forget
from .programs import gradient_function as gradient_function
from .programs import objective as objective
from .programs import raise_failures as raise_failures
from .programs import tolerances as tolerances
