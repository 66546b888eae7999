"""Delay differential equations: method of steps, gradients, the delay adjoint, input checks.

References are independent of the code under test: the method-of-steps closed form of
y'(t) = -a y(t - τ) with history 1 (and its derivatives in a and τ written out by hand), and for
Mackey–Glass a scipy DOP853 method-of-steps solve at rtol 1e-13.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import odelab as ol
from odelab import DelaySystem

# ------------------------------------------------------------------------------------------------
# y'(t) = -a y(t - τ), y = 1 for t ≤ 0: on [(k-1)τ, kτ], y = Σ_{j≤k} (-a)^j (t - (j-1)τ)^j / j!
# ------------------------------------------------------------------------------------------------
A, TAU = 0.8, 1.0
TS = np.array([0.0, 0.5, 1.0, 1.7, 2.0, 2.5, 3.0])


def linear_exact(t, a=A, tau=TAU):
    """(y, ∂y/∂a, ∂y/∂τ, ∂²y/∂a²) from the closed form."""
    y, ya, yt, yaa = 1.0, 0.0, 0.0, 0.0
    for j in range(1, 40):
        s = t - (j - 1) * tau
        if s <= 0:
            break
        c = s**j / math.factorial(j)
        y += (-a) ** j * c
        ya += j * (-1) ** j * a ** (j - 1) * c
        yaa += j * (j - 1) * (-1) ** j * a ** max(j - 2, 0) * c if j >= 2 else 0.0
        yt += (-a) ** j * s ** (j - 1) / math.factorial(j - 1) * (-(j - 1))
    return np.array([y, ya, yt, yaa])


def linear_rhs(t, y, yd, p):
    return -p["a"] * yd[0]


@pytest.fixture(scope="module")
def linear():
    return DelaySystem(linear_rhs, delays="tau", history=1.0, states=("x",),
                       params=dict(a=A, tau=TAU), t_span=(0.0, 3.0), name="linear_dde")


def linear_loss(system):
    return lambda p: jnp.sum(ol.solve(system, params=p, saveat=TS, solver="tsit5").ys[:, 0] ** 2)


def linear_reference():
    e = np.array([linear_exact(t) for t in TS])
    return dict(a=np.sum(2 * e[:, 0] * e[:, 1]), tau=np.sum(2 * e[:, 0] * e[:, 2]))


def test_linear_solution_matches_closed_form(linear):
    sol = ol.solve(linear, saveat=TS, solver="tsit5", rtol=1e-10, atol=1e-12)
    exact = np.array([linear_exact(t)[0] for t in TS])
    assert sol.ok and sol.states == ("x",)
    # piecewise polynomials of degree ≤ 4: the 5th-order solver is exact up to rounding
    np.testing.assert_allclose(np.asarray(sol["x"]), exact, rtol=0, atol=1e-13)
    # breakpoints at τ, 2τ are step ends: the steps landed on them
    assert sol.stats["steps"] < 40


@pytest.mark.parametrize("method", ["checkpoint", "auto", "delay-adjoint"])
def test_linear_gradient_in_a_and_tau(linear, method):
    g = ol.gradient(linear_loss(linear), linear.params, method=method, rtol=1e-10, atol=1e-12)
    ref = linear_reference()
    for name in ("a", "tau"):
        assert abs(float(g[name]) - ref[name]) < 1e-11 * (1 + abs(ref[name])), (method, name)


def test_linear_hessian_in_a(linear):
    h = ol.hessian(linear_loss(linear), linear.params, rtol=1e-10, atol=1e-12)
    names = ol.flat_names(linear.params)
    i = names.index("a")
    e = np.array([linear_exact(t) for t in TS])
    ref = np.sum(2 * e[:, 1] ** 2 + 2 * e[:, 0] * e[:, 3])
    assert abs(float(h[i, i]) - ref) < 1e-9 * (1 + abs(ref))


def test_constant_delay_history_function_and_given_y0():
    """A numeric delay, history(t, p) = h0 + c t, and y0 different from history(t0)."""

    def rhs(t, y, yd, p):
        return -p["a"] * yd[0]

    system = DelaySystem(rhs, delays=0.5, history=lambda t, p: jnp.array([p["h0"] + 2.0 * t]),
                         states=("x",), params=dict(a=1.0, h0=1.0), y0=[2.0],
                         t_span=(0.0, 1.0))
    sol = ol.solve(system, saveat=np.array([0.25, 0.5, 0.75, 1.0]), solver="tsit5", rtol=1e-10,
                   atol=1e-12)
    # on [0, .5]: y' = -(1 + 2(t - .5)) -> y = 2 - t^2 ;  on [.5, 1]: y' = -(2 - (t - .5)^2)
    y_half = 2 - 0.25
    exact = [2 - 0.0625, y_half, y_half - 2 * 0.25 + 0.25**3 / 3, y_half - 1.0 + 0.5**3 / 3]
    np.testing.assert_allclose(np.asarray(sol["x"]), exact, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Mackey–Glass: x' = β x(t-τ) / (1 + x(t-τ)^n) - γ x, β=2, γ=1, n=9.65, τ=2, history 0.5
# ------------------------------------------------------------------------------------------------
MG = dict(beta=2.0, gamma=1.0, n=9.65, tau=2.0)
MG_T = 20.0
MG_TS = 0.37 + 1.3 * np.arange(15)  # away from the breakpoints 2k, where y is less smooth in τ


def mackey_glass(t, y, yd, p):
    x = yd[0, 0]
    return jnp.array([p["beta"] * x / (1 + x ** p["n"]) - p["gamma"] * y[0]])


def mg_reference(beta=2.0, gamma=1.0, n=9.65, tau=2.0, t_end=MG_T):
    """scipy DOP853 by the method of steps (rtol 1e-13): interval k reads interval k-1."""
    pieces = []

    def delayed(s):
        if s <= 0:
            return 0.5
        k = min(int(s // tau), len(pieces) - 1)
        return float(pieces[k].sol(s)[0])

    y, t = 0.5, 0.0
    while t < t_end - 1e-12:
        t_next = min(t + tau, t_end)
        rhs = lambda s, x: [beta * (d := delayed(s - tau)) / (1 + d**n) - gamma * x[0]]
        piece = solve_ivp(rhs, (t, t_next), [y], method="DOP853", rtol=1e-13, atol=1e-13,
                          dense_output=True)
        pieces.append(piece)
        y, t = piece.y[0, -1], t_next
    return lambda s: np.array([pieces[min(int(si // tau), len(pieces) - 1)].sol(si)[0]
                               for si in np.atleast_1d(s)])


@pytest.fixture(scope="module")
def mg_system():
    return DelaySystem(mackey_glass, delays="tau", history=0.5, states=("x",), params=MG,
                       t_span=(0.0, MG_T), name="mackey_glass")


@pytest.fixture(scope="module")
def mg_ref():
    return mg_reference()(MG_TS)


def test_mackey_glass_solution(mg_system, mg_ref):
    sol = ol.solve(mg_system, saveat=MG_TS, solver="tsit5", rtol=1e-10, atol=1e-12)
    assert sol.ok
    err = np.max(np.abs(np.asarray(sol["x"]) - mg_ref))
    assert err < 1e-8, err


def test_mackey_glass_gradients_match_differences_of_reference(mg_system):
    def ref_loss(**changes):
        return float(np.sum(mg_reference(**{**MG, **changes})(MG_TS) ** 2))

    def central(k, h):
        return (ref_loss(**{k: MG[k] + h}) - ref_loss(**{k: MG[k] - h})) / (2 * h)

    # Richardson-extrapolated central differences (the τ-derivative's h² term is large)
    fd = {k: (4 * central(k, 5e-5) - central(k, 1e-4)) / 3 for k in ("beta", "tau")}
    loss = lambda p: jnp.sum(ol.solve(mg_system, params=p, saveat=MG_TS, solver="tsit5").ys ** 2)
    dto = ol.gradient(loss, mg_system.params, method="checkpoint", rtol=1e-10, atol=1e-12)
    adj = ol.gradient(loss, mg_system.params, method="delay-adjoint", rtol=1e-10, atol=1e-12)
    for k in ("beta", "tau"):
        assert abs(float(dto[k]) - fd[k]) < 1e-6 * (1 + abs(fd[k])), (k, dto[k], fd[k])
        assert abs(float(adj[k]) - fd[k]) < 1e-6 * (1 + abs(fd[k])), (k, adj[k], fd[k])
    # the continuous adjoint and the discrete gradient agree (measured: ≈ 2e-7 relative in τ)
    for k in ("beta", "gamma", "n", "tau"):
        assert abs(float(adj[k]) - float(dto[k])) < 1e-6 * (1 + abs(float(dto[k]))), k


# ------------------------------------------------------------------------------------------------
# several delays, stiff solver, dense output
# ------------------------------------------------------------------------------------------------
def test_two_delays_against_scipy_reference_and_stiff_solver():
    def rhs(t, y, yd, p):
        return jnp.array([-p["a"] * yd[0, 0] - 0.5 * yd[1, 0] + 0.1 * y[0]])

    system = DelaySystem(rhs, delays=["tau", 0.7], history=1.0, states=("x",),
                         params=dict(a=1.0, tau=1.0), t_span=(0.0, 3.0))
    # reference: fixed-step RK4 on a grid that contains every delay multiple, Hermite cubic for
    # the half steps (4th order), at two step sizes for its own error estimate
    def rk4(h):
        n = round(3.0 / h)
        ys = np.ones(n + 1)
        fs = np.zeros(n + 1)

        def past(s):
            if s <= 0:
                return 1.0
            k = min(int(s / h), n - 1)
            u = s / h - k
            y0, y1, f0, f1 = ys[k], ys[k + 1], fs[k] * h, fs[k + 1] * h
            return ((2 * u**3 - 3 * u**2 + 1) * y0 + (u**3 - 2 * u**2 + u) * f0
                    + (-2 * u**3 + 3 * u**2) * y1 + (u**3 - u**2) * f1)

        rhs_np = lambda t, y: -past(t - 1.0) - 0.5 * past(t - 0.7) + 0.1 * y
        for i in range(n):
            t, y = i * h, ys[i]
            fs[i] = rhs_np(t, y)
            k1 = fs[i]
            k2 = rhs_np(t + h / 2, y + h / 2 * k1)
            k3 = rhs_np(t + h / 2, y + h / 2 * k2)
            k4 = rhs_np(t + h, y + h * k3)
            ys[i + 1] = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            fs[i + 1] = rhs_np(t + h, ys[i + 1])
        return ys[::round(0.5 / h)]

    ref, ref_coarse = rk4(0.0025), rk4(0.005)
    assert np.max(np.abs(ref - ref_coarse)) < 1e-9
    ts = np.linspace(0.0, 3.0, 7)
    sol = ol.solve(system, saveat=ts, solver="tsit5", rtol=1e-10, atol=1e-12)
    assert np.max(np.abs(np.asarray(sol["x"]) - ref)) < 1e-9
    stiff = ol.solve(system, saveat="dense", solver="kvaerno5", rtol=1e-8, atol=1e-10)
    assert np.max(np.abs(np.asarray(stiff.evaluate(ts))[:, 0] - ref)) < 1e-6


# ------------------------------------------------------------------------------------------------
# checks on what users give
# ------------------------------------------------------------------------------------------------
def test_input_errors():
    ok = dict(delays="tau", history=1.0, states=("x",), params=dict(a=1.0, tau=1.0))
    with pytest.raises(ol.InputError, match="zero delay"):
        DelaySystem(linear_rhs, **{**ok, "delays": 0.0})
    with pytest.raises(ol.InputError, match="positive"):
        DelaySystem(linear_rhs, **{**ok, "params": dict(a=1.0, tau=-1.0)})
    with pytest.raises(ol.InputError, match="Did you mean 'tau'"):
        DelaySystem(linear_rhs, **{**ok, "delays": "taux"})
    with pytest.raises(ol.InputError, match="history"):
        DelaySystem(linear_rhs, **{**ok, "history": [1.0, 2.0]})
    with pytest.raises(ol.InputError, match=r"history\(t, p\)"):
        DelaySystem(linear_rhs, **{**ok, "history": lambda t, p: jnp.ones(3)})
    with pytest.raises(ol.VectorFieldError, match="shape"):
        DelaySystem(lambda t, y, yd, p: yd, **ok)
    with pytest.raises(ol.VectorFieldError, match="y_delayed"):
        DelaySystem(lambda t, y, yd, p: yd[0, 0, 0], **ok)
    with pytest.raises(ol.InputError, match="max_intervals"):
        DelaySystem(linear_rhs, **ok, max_intervals=0)


def test_solve_time_errors(linear):
    with pytest.raises(ol.InputError, match="zero delay"):
        ol.solve(linear, params=dict(tau=0.0))
    with pytest.raises(ol.MethodError, match="delay-adjoint"):
        ol.solve(linear, method="backsolve")
    with pytest.raises(ol.InputError, match="dense"):
        ol.solve(linear, method="delay-adjoint", saveat="dense")
    with pytest.raises(ol.MethodError, match="second-order|no second"):
        ol.hessian(linear_loss(linear), linear.params, method="delay-adjoint")
