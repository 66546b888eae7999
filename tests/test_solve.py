"""ol.solve against references that do not come from odelab: closed forms, published solutions."""

import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
import scipy.linalg
from helpers import rel_err
from hypothesis import given
from hypothesis import strategies as st

import odelab as ol
from odelab.solve.solvers.testset import PROBLEMS, relative_error


# --------------------------------------------------------------------------------------------
# closed forms
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def decay():
    return ol.System(lambda t, y, p: -p["k"] * y, states=("y",), params=dict(k=0.7), y0=[2.0],
                     t_span=(0.0, 3.0), name="decay")


@pytest.mark.parametrize("solver,rtol,tol", [
    ("tsit5", 1e-13, 5e-11), ("dopri5", 1e-13, 5e-11), ("dopri8", 1e-13, 5e-11),
    ("bosh3", 1e-12, 1e-9), ("kvaerno5", 1e-12, 1e-9), ("kvaerno3", 1e-10, 1e-8),
])
def test_exponential_decay_to_near_machine_precision(decay, solver, rtol, tol):
    sol = ol.solve(decay, solver=solver, rtol=rtol, atol=rtol * 1e-2, saveat=31, max_steps=200_000)
    exact = 2.0 * np.exp(-0.7 * np.asarray(sol.ts))
    assert rel_err(sol["y"], exact) < tol


def test_linear_system_matches_matrix_exponential():
    a = np.array([[-0.3, 2.0, 0.0], [-2.0, -0.3, 0.5], [0.0, -0.5, -1.0]])
    sys = ol.System(lambda t, y, p: p["A"] @ y, states=("u", "v", "w"), params=dict(A=a),
                    y0=[1.0, 0.0, -1.0], t_span=(0.0, 5.0))
    sol = ol.solve(sys, solver="dopri8", rtol=1e-13, atol=1e-15, saveat=11)
    exact = np.stack([scipy.linalg.expm(a * t) @ np.array([1.0, 0.0, -1.0]) for t in sol.ts])
    assert rel_err(sol.ys, exact) < 1e-10


def test_harmonic_oscillator_dense_output_matches_closed_form():
    sys = ol.System(lambda t, y, p: jnp.stack([y[1], -p["w"] ** 2 * y[0]]), states=("x", "v"),
                    params=dict(w=1.3), y0=[1.0, 0.0], t_span=(0.0, 10.0))
    sol = ol.solve(sys, solver="tsit5", rtol=1e-12, atol=1e-14, saveat="dense")
    t = np.linspace(0.1, 9.9, 57)  # between the steps: the interpolant, not the step points
    x = np.asarray(sol.evaluate(t))[:, 0]
    assert rel_err(x, np.cos(1.3 * t)) < 1e-9


@pytest.mark.parametrize("solver,order", [("euler", 1), ("heun", 2), ("midpoint", 2),
                                          ("ralston", 2), ("bosh3", 3), ("tsit5", 5)])
def test_fixed_step_convergence_order(decay, solver, order):
    errors = []
    for dt in (0.05, 0.025):
        sol = ol.solve(decay, solver=solver, dt=dt, saveat=2)
        errors.append(abs(float(sol.ys[-1, 0]) - 2.0 * np.exp(-2.1)))
    observed = np.log2(errors[0] / errors[1])
    assert abs(observed - order) < 0.3


# --------------------------------------------------------------------------------------------
# published non-stiff reference solutions
# --------------------------------------------------------------------------------------------
def test_arenstorf_orbit_is_periodic():
    """Hairer–Nørsett–Wanner I.0: the Arenstorf orbit returns to y0 after
    T = 17.0652165601579625."""
    mu = 0.012277471
    period = 17.0652165601579625588917206249

    def f(t, y, p):
        x, yy, vx, vy = y
        m = 1 - mu
        d1 = ((x + mu) ** 2 + yy**2) ** 1.5
        d2 = ((x - m) ** 2 + yy**2) ** 1.5
        return jnp.stack([vx, vy, x + 2 * vy - m * (x + mu) / d1 - mu * (x - m) / d2,
                          yy - 2 * vx - m * yy / d1 - mu * yy / d2])

    y0 = [0.994, 0.0, 0.0, -2.00158510637908252240537862224]
    sys = ol.System(f, states=("x", "y", "vx", "vy"), y0=y0, t_span=(0.0, period))
    sol = ol.solve(sys, solver="dopri8", rtol=1e-12, atol=1e-14, saveat=2)
    assert rel_err(sol.ys[-1], y0) < 1e-8


def _kepler_reference(e: float, t: float) -> np.ndarray:
    """Kepler orbit (unit semi-major axis, period 2π) from Kepler's equation in 40 digits."""
    mpmath.mp.dps = 40
    big_e = mpmath.findroot(lambda ee: ee - e * mpmath.sin(ee) - t, t)
    c, s = mpmath.cos(big_e), mpmath.sin(big_e)
    r = 1 - e * c
    root = mpmath.sqrt(1 - e**2)
    return np.array([float(c - e), float(root * s), float(-s / r), float(root * c / r)])


def test_kepler_orbit_matches_keplers_equation():
    e = 0.6

    def f(t, y, p):
        r3 = (y[0] ** 2 + y[1] ** 2) ** 1.5
        return jnp.stack([y[2], y[3], -y[0] / r3, -y[1] / r3])

    y0 = [1 - e, 0.0, 0.0, np.sqrt((1 + e) / (1 - e))]
    sys = ol.System(f, states=("q1", "q2", "p1", "p2"), y0=y0, t_span=(0.0, 20.0))
    sol = ol.solve(sys, solver="dopri8", rtol=1e-12, atol=1e-14, saveat=5)
    exact = np.stack([_kepler_reference(e, float(t)) for t in sol.ts])
    assert rel_err(sol.ys, exact) < 1e-8


# --------------------------------------------------------------------------------------------
# published stiff reference solutions that diffrax's Kvaerno5 handles
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["hires", "pollution"])
def test_stiff_reference_solutions_with_kvaerno5(name):
    p = PROBLEMS[name]
    sys = ol.System(lambda t, y, a, f=p.field: f(t, y, a), states=len(p.y0), y0=p.y0,
                    t_span=(0.0, p.t1), name=name)
    sol = ol.solve(sys, solver="kvaerno5", rtol=1e-10, atol=1e-14, saveat=2,
                   max_steps=100_000)
    # the test set's measure: relative error, with components far below the scale ignored
    assert relative_error(sol.ys[-1], p.reference, floor=1e-3 * max(p.atol_scale)) < 1e-6


# --------------------------------------------------------------------------------------------
# the Solution object
# --------------------------------------------------------------------------------------------
def test_solution_access_and_exports(decay):
    sol = ol.solve(decay, saveat=[0.0, 1.0, 2.0])
    assert sol.ok is True
    np.testing.assert_allclose(sol["y"], 2 * np.exp(-0.7 * np.array([0.0, 1.0, 2.0])), rtol=1e-5)
    ts, ys = sol.to_numpy()
    assert ts.shape == (3,) and ys.shape == (3, 1)
    frame = sol.to_pandas()
    assert list(frame.columns) == ["y"] and frame.index.name == "t"
    stats = sol.stats
    assert stats["steps"] == stats["accepted"] + stats["rejected"] > 0
    assert stats["fevals"] >= stats["steps"]
    html = sol._repr_html_()
    assert "decay" in html and "ok" in html and "<table>" in html
    assert "Solved" in sol.message


def test_solution_is_a_pytree_usable_under_jit(decay):
    import jax

    final = jax.jit(lambda k: ol.solve(decay, params=dict(k=k), saveat=2).ys[-1, 0])
    assert abs(float(final(0.5)) - 2 * np.exp(-1.5)) < 1e-5


def test_auto_solver_picks_by_stiffness():
    stiff = ol.gallery.robertson()
    chosen = ol.solve(stiff.replace(stiff=None), saveat=2, t_span=(0.0, 1.0)).solver
    assert chosen in ol.solver_names(stiff=True)
    lv = ol.gallery.lotka_volterra()
    sol = ol.solve(lv.replace(stiff=None), saveat=2)
    assert sol.solver == "tsit5" and "non-stiff" in sol.solver_reason


def test_failed_solve_reports_status_without_raising_when_asked(decay):
    blowup = ol.System(lambda t, y, p: y**2, states=("y",), y0=[1.0], t_span=(0.0, 2.0))
    sol = ol.solve(blowup, throw=False, saveat=5)
    assert sol.ok is False
    assert "blew up" in sol.message or "max_steps" in sol.message or "collapsed" in sol.message


# --------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------
@given(k=st.floats(0.05, 3.0), y0=st.floats(-5.0, 5.0), t1=st.floats(0.1, 4.0))
def test_decay_matches_closed_form_for_any_values(decay, k, y0, t1):
    sol = ol.solve(decay, params=dict(k=k), y0=[y0], t_span=(0.0, t1), rtol=1e-10, atol=1e-12,
                   saveat=2)
    assert abs(float(sol.ys[-1, 0]) - y0 * np.exp(-k * t1)) <= 1e-8 * max(1.0, abs(y0))


@given(split=st.floats(0.2, 0.8))
def test_solving_in_two_pieces_equals_one_solve(split):
    lv = ol.gallery.lotka_volterra()
    t0, t1 = lv.t_span
    tm = t0 + split * (t1 - t0)
    whole = ol.solve(lv, rtol=1e-11, atol=1e-12, saveat=2).ys[-1]
    first = ol.solve(lv, t_span=(t0, tm), rtol=1e-11, atol=1e-12, saveat=2).ys[-1]
    second = ol.solve(lv, y0=np.asarray(first), t_span=(tm, t1), rtol=1e-11, atol=1e-12,
                      saveat=2).ys[-1]
    assert rel_err(second, whole) < 1e-7


ROTATION = ol.System(lambda t, y, p: p["A"] @ y, states=2,
                     params=dict(A=np.array([[-0.5, 1.0], [-1.0, -0.5]])), y0=[1.0, 2.0],
                     t_span=(0.0, 2.0), name="rotation")


@given(scale=st.floats(0.1, 10.0))
def test_linear_system_scales_linearly_with_y0(scale):
    base = ol.solve(ROTATION, rtol=1e-11, atol=1e-13, saveat=2).ys[-1]
    scaled = ol.solve(ROTATION, y0=[scale, 2 * scale], rtol=1e-11, atol=1e-13, saveat=2).ys[-1]
    assert rel_err(scaled, scale * np.asarray(base)) < 1e-8


def test_the_solver_reason_is_this_solves_even_when_the_program_is_shared():
    """Two solves that differ only in why their solver was chosen share one program; each
    solution still says its own reason."""
    lv = ol.gallery.lotka_volterra()
    marked = ol.solve(lv.replace(stiff=False), saveat=2)
    probed = ol.solve(lv.replace(stiff=None), saveat=2)
    assert marked.solver == probed.solver == "tsit5"
    assert "marked stiff=False" in marked.solver_reason
    assert "non-stiff" in probed.solver_reason
