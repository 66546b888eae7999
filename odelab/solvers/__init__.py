"""odelab's own stiff solvers, usable directly with `diffrax.diffeqsolve`."""

from ._rosenbrock import Rodas5 as Rodas5
