"""`solver="auto"` on the hard stiff test problems, through `ol.solve`, against published values.

The reference values are the IVP test set's (Mazzia & Magherini; Hairer & Wanner), computed
there with RADAU5 in quadruple precision (odelab/solvers/testset.py).
"""

import jax.numpy as jnp
import numpy as np
import pytest

import odelab as ol
from odelab.solve.solvers.testset import PROBLEMS, relative_error


def _system(name):
    p = PROBLEMS[name]
    return ol.System(lambda t, y, a, f=p.field: f(t, y, a), states=len(p.y0), y0=p.y0,
                     t_span=(0.0, p.t1), name=name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["van_der_pol", "oregonator", "robertson", "hires", "pollution"])
def test_auto_solves_published_stiff_problems(name):
    p = PROBLEMS[name]
    sol = ol.solve(_system(name), rtol=1e-10, atol=1e-10 * min(p.atol_scale), saveat=2,
                   max_steps=200_000)
    assert ol.solver_names(stiff=True).count(sol.solver) == 1, sol.solver_reason
    assert "stiff" in sol.solver_reason
    error = relative_error(sol.ys[-1], p.reference, floor=1e-3 * max(p.atol_scale))
    assert error < 1e-6, f"{name}: {error:.2e} with {sol.solver} ({sol.stats})"


@pytest.mark.parametrize("solver", ["rodas5", "radau5"])
def test_gradient_through_odelab_stiff_solvers_matches_closed_form(solver):
    """y' = −k (y − cos t) with k large: y(T) has a closed form, and so does dy(T)/dk."""

    def exact(k, t):
        # y(t) = k (k cos t + sin t)/(k² + 1) + C e^{−kt}, with y(0) = 0
        c = -k**2 / (k**2 + 1)
        return k * (k * np.cos(t) + np.sin(t)) / (k**2 + 1) + c * np.exp(-k * t)

    system = ol.System(lambda t, y, p: -p["k"] * (y - jnp.cos(t)), states=("y",),
                       params=dict(k=50.0), y0=[0.0], t_span=(0.0, 1.0))
    loss = lambda p: ol.solve(system, params=p, saveat=2, solver=solver).ys[-1, 0]
    k, h = 50.0, 1e-4
    derivative = (exact(k + h, 1.0) - exact(k - h, 1.0)) / (2 * h)  # of the closed form
    for method in ("checkpoint", "forward"):
        g = ol.gradient(loss, dict(k=k), method=method, rtol=1e-10, atol=1e-12)
        assert abs(float(g["k"]) - derivative) < 1e-6 * abs(derivative) + 1e-9
    value = ol.solve(system, saveat=2, solver=solver, rtol=1e-10, atol=1e-12).ys[-1, 0]
    assert abs(float(value) - exact(k, 1.0)) < 1e-8
