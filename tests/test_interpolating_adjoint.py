"""The interpolating adjoint (`method="interpolating"`, `Interpolating(checkpoints=k)`) against
closed forms: gradients and Hessian-vector products of trajectory losses, with many save points
and few, adaptive and fixed steps, explicit and implicit solvers, checkpointed or not.

References are JAX autodiff of closed-form solutions built from elementary functions (no ODE
solver involved): a linear system y' = A(p) y whose matrix exponential is known
(A = Q(θ) B Q(θ)ᵀ with Q a rotation and B a damped rotation plus a decaying mode), a block
system of twenty states, exponential decay, and the logistic equation. The linear system's closed
form is checked once against scipy's expm.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import odelab as ol
from odelab._errors import MethodError

RTOL, ATOL = 1e-10, 1e-12
GRAD_RTOL, HVP_RTOL = 1e-7, 1e-6


# --- a linear system with a known matrix exponential ----------------------------------------------
P_LIN = {"a": 0.4, "w": 2.0, "c": 0.9, "theta": 0.7}
V_LIN = {"a": 0.3, "w": -0.5, "c": 0.2, "theta": 1.0}
Y0_LIN = np.array([1.0, -0.5, 0.8])
AXIS = np.array([1.0, 2.0, 2.0]) / 3.0


def _rotation(theta):
    k = jnp.array([[0.0, -AXIS[2], AXIS[1]], [AXIS[2], 0.0, -AXIS[0]],
                   [-AXIS[1], AXIS[0], 0.0]])
    return jnp.eye(3) + jnp.sin(theta) * k + (1.0 - jnp.cos(theta)) * (k @ k)


def _b(p):
    return jnp.array([[-p["a"], p["w"], 0.0], [-p["w"], -p["a"], 0.0], [0.0, 0.0, -p["c"]]])


def linear_field(t, y, p):
    q = _rotation(p["theta"])
    return q @ (_b(p) @ (q.T @ y))


def linear_exact(p, ts, y0=Y0_LIN):
    """y(t) = Q exp(B t) Qᵀ y0, exp(B t) written out."""
    q = _rotation(p["theta"])
    z = q.T @ jnp.asarray(y0)
    e, c, s = jnp.exp(-p["a"] * ts), jnp.cos(p["w"] * ts), jnp.sin(p["w"] * ts)
    zt = jnp.stack([e * (c * z[0] + s * z[1]), e * (-s * z[0] + c * z[1]),
                    jnp.exp(-p["c"] * ts) * z[2]], axis=1)
    return zt @ q.T


LINEAR = ol.System(linear_field, ("x", "y", "z"), params=P_LIN, y0=Y0_LIN, t_span=(0.0, 4.0),
                   name="rotated_linear")


def trajectory_loss(ys, ts):
    """Nonlinear in the states, so the Hessian has both kinds of terms."""
    data = jnp.stack([jnp.cos(ts), 0.5 * jnp.sin(ts), 0.2 * ts], axis=1)[:, :ys.shape[1]]
    return jnp.mean((ys - data) ** 2) + 0.3 * jnp.mean(ys[:, 0] ** 3)


def test_linear_closed_form_agrees_with_expm():
    p = {k: jnp.asarray(v) for k, v in P_LIN.items()}
    q, b = np.asarray(_rotation(p["theta"])), np.asarray(_b(p))
    a = q @ b @ q.T
    for t in (0.3, 2.5):
        want = scipy.linalg.expm(a * t) @ Y0_LIN
        got = np.asarray(linear_exact(p, jnp.array([t])))[0]
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    # and the field is A y
    np.testing.assert_allclose(np.asarray(linear_field(0.0, jnp.asarray(Y0_LIN), p)), a @ Y0_LIN,
                               rtol=1e-14)


def _grad_and_hvp(loss, p, v):
    """The gradient and the HVP along v in one program (forward over the adjoint)."""
    p = {k: jnp.asarray(val) for k, val in p.items()}
    v = {k: jnp.asarray(val) for k, val in v.items()}
    return jax.jit(lambda q: jax.jvp(jax.grad(loss), (q,), (v,)))(p)


def _flat(tree):
    return np.array([float(tree[k]) for k in sorted(tree)])


def _check(got, want, rtol):
    got, want = _flat(got), _flat(want)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.max(np.abs(want)))


def _case(name, n_save, steps, method, slow=False):
    return pytest.param(name, n_save, steps, method, id=name,
                        marks=pytest.mark.slow if slow else ())


CASES = [  # (name, save points, step settings, method); the heavier variants marked slow
    _case("1000 saves, adaptive", 1000, {"rtol": RTOL, "atol": ATOL}, "interpolating"),
    _case("3 saves, adaptive", 3, {"rtol": RTOL, "atol": ATOL}, "interpolating"),
    _case("1000 saves, fixed steps", 1000, {"dt": 2e-3}, "interpolating"),
    _case("1000 saves, 4 checkpoints", 1000, {"rtol": RTOL, "atol": ATOL},
          ol.methods.Interpolating(checkpoints=4)),
    _case("7 saves, fixed steps", 7, {"dt": 2e-3}, "interpolating", slow=True),
    _case("3 saves, 64 checkpoints", 3, {"rtol": RTOL, "atol": ATOL},
          ol.methods.Interpolating(checkpoints=64), slow=True),
    _case("1000 saves, fixed steps, 16 checkpoints", 1000, {"dt": 2e-3},
          ol.methods.Interpolating(checkpoints=16), slow=True),
]


@pytest.mark.parametrize(("name", "n_save", "steps", "method"), CASES)
def test_linear_system_gradient_and_hvp(name, n_save, steps, method):
    ts = jnp.linspace(0.0, 4.0, n_save)

    def loss(p):
        ys = ol.solve(LINEAR, params=p, saveat=n_save, solver="tsit5", method=method,
                      max_steps=4096, **steps).ys
        return trajectory_loss(ys, ts)

    exact = lambda p: trajectory_loss(linear_exact(p, ts), ts)  # noqa: E731
    g, hv = _grad_and_hvp(loss, P_LIN, V_LIN)
    g_ref, hv_ref = _grad_and_hvp(exact, P_LIN, V_LIN)
    _check(g, g_ref, GRAD_RTOL)
    _check(hv, hv_ref, HVP_RTOL)


def test_initial_state_gradient_and_hvp():
    ts = jnp.linspace(0.0, 4.0, 50)
    p = {k: jnp.asarray(v) for k, v in P_LIN.items()}

    def loss(y0):
        ys = ol.solve(LINEAR, y0=y0, params=p, saveat=50, solver="tsit5", rtol=RTOL, atol=ATOL,
                      method="interpolating").ys
        return trajectory_loss(ys, ts)

    exact = lambda y0: trajectory_loss(linear_exact(p, ts, y0), ts)  # noqa: E731
    y0, v = jnp.asarray(Y0_LIN), jnp.array([0.3, -1.0, 0.5])
    g, hv = jax.jit(lambda y: jax.jvp(jax.grad(loss), (y,), (v,)))(y0)
    g_ref, hv_ref = jax.jvp(jax.grad(exact), (y0,), (v,))
    np.testing.assert_allclose(g, g_ref, rtol=GRAD_RTOL, atol=GRAD_RTOL * np.max(np.abs(g_ref)))
    np.testing.assert_allclose(hv, hv_ref, rtol=HVP_RTOL, atol=HVP_RTOL * np.max(np.abs(hv_ref)))


@pytest.mark.slow
def test_repeated_save_times_and_the_final_state():
    """Save times given as an array, some repeated, one at t0, and the loss reading the
    Solution's final state too: every cotangent lands at its time, a repeated time's once per
    copy."""
    ts = jnp.array([0.0, 0.5, 0.5, 1.3, 2.0, 3.7, 3.7, 3.7])

    def loss_of(ys, y_end):
        return trajectory_loss(ys, ts) + jnp.sum(y_end**2)

    def loss(p):
        sol = ol.solve(LINEAR, params=p, saveat=np.asarray(ts), solver="tsit5", rtol=RTOL,
                       atol=ATOL, method="interpolating")
        return loss_of(sol.ys, sol.y_reached)

    exact = lambda p: loss_of(linear_exact(p, ts), linear_exact(p, jnp.array([4.0]))[0])  # noqa
    g, hv = _grad_and_hvp(loss, P_LIN, V_LIN)
    g_ref, hv_ref = _grad_and_hvp(exact, P_LIN, V_LIN)
    _check(g, g_ref, GRAD_RTOL)
    _check(hv, hv_ref, HVP_RTOL)


@pytest.mark.parametrize("method", [
    "interpolating",
    # max_steps is 3: segments of one step; one segment of both steps
    pytest.param(ol.methods.Interpolating(checkpoints=8), marks=pytest.mark.slow),
    pytest.param(ol.methods.Interpolating(checkpoints=2), marks=pytest.mark.slow),
])
def test_a_solve_of_two_steps(method):
    """y' = a + b t over two fixed steps (Runge–Kutta is exact for it): records and segments of
    one or two steps, save times between the steps, jumps at save times that are not steps."""
    system = ol.System(lambda t, y, p: jnp.stack([p["a"] + p["b"] * t, p["a"] * p["b"] + 0 * y[1]]),
                       ("u", "v"), params={"a": 0.5, "b": -0.3}, y0=[1.0, 2.0],
                       t_span=(0.0, 4.0), name="polynomial")
    ts = jnp.array([0.0, 0.7, 2.0, 3.1, 4.0])

    def loss_of(ys):
        return jnp.sum(ys[:, 0] ** 3) + jnp.sum(ys[:, 0] * ys[:, 1])

    def loss(p):
        return loss_of(ol.solve(system, params=p, saveat=np.asarray(ts), solver="tsit5", dt=2.0,
                                max_steps=3, method=method).ys)

    def exact(p):
        u = 1.0 + p["a"] * ts + p["b"] * ts**2 / 2
        return loss_of(jnp.stack([u, 2.0 + p["a"] * p["b"] * ts], axis=1))

    g, hv = _grad_and_hvp(loss, {"a": 0.5, "b": -0.3}, {"a": 1.0, "b": 0.5})
    g_ref, hv_ref = _grad_and_hvp(exact, {"a": 0.5, "b": -0.3}, {"a": 1.0, "b": 0.5})
    _check(g, g_ref, 1e-12)
    _check(hv, hv_ref, 1e-12)


# --- twenty states: the adjoint's vector-Jacobian-product path -----------------------------------
# (with few states and parameters a step's stage Jacobians are formed whole instead)
BLOCKS = 10
P_BLOCK = {"a": jnp.linspace(0.2, 0.6, BLOCKS), "w": jnp.linspace(0.5, 2.5, BLOCKS)}
V_BLOCK = {"a": jnp.linspace(1.0, -1.0, BLOCKS), "w": jnp.linspace(-0.5, 0.5, BLOCKS)}
Y0_BLOCK = np.linspace(-1.0, 1.0, 2 * BLOCKS)


def block_field(t, y, p):
    u, v = y[0::2], y[1::2]
    du = -p["a"] * u + p["w"] * v
    dv = -p["w"] * u - p["a"] * v
    return jnp.stack([du, dv], axis=1).ravel()


def block_exact(p, ts):
    u0, v0 = Y0_BLOCK[0::2], Y0_BLOCK[1::2]
    e = jnp.exp(-ts[:, None] * p["a"])
    c, s = jnp.cos(ts[:, None] * p["w"]), jnp.sin(ts[:, None] * p["w"])
    u, v = e * (c * u0 + s * v0), e * (-s * u0 + c * v0)
    return jnp.stack([u, v], axis=2).reshape(ts.shape[0], 2 * BLOCKS)


def test_twenty_states_gradient_and_hvp():
    system = ol.System(block_field, 2 * BLOCKS, params=P_BLOCK, y0=Y0_BLOCK, t_span=(0.0, 3.0),
                       name="twenty_states")
    ts = jnp.linspace(0.0, 3.0, 200)

    def loss_of(ys):
        return jnp.mean(ys**2) + 0.1 * jnp.mean(ys[:, 0] * ys[:, 3] * ys[:, 8])

    def loss(p):
        return loss_of(ol.solve(system, params=p, saveat=200, solver="dopri5", rtol=RTOL,
                                atol=ATOL, method="interpolating").ys)

    exact = lambda p: loss_of(block_exact(p, ts))  # noqa: E731
    run = lambda f: jax.jit(lambda q: jax.jvp(jax.grad(f), (q,), (V_BLOCK,)))(P_BLOCK)  # noqa
    (g, hv), (g_ref, hv_ref) = run(loss), run(exact)
    for got, want, tol in ((g, g_ref, GRAD_RTOL), (hv, hv_ref, HVP_RTOL)):
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=tol,
                                       atol=tol * float(jnp.max(jnp.abs(want[k]))))


# --- one state: exponential decay and the logistic equation ---------------------------------------
def test_exponential_decay_with_many_saves():
    system = ol.System(lambda t, y, p: -p["k"] * y, ("y",), params={"k": 0.8}, y0=[2.0],
                       t_span=(0.0, 5.0), name="decay")
    ts = jnp.linspace(0.0, 5.0, 1000)
    weights = jnp.cos(3.0 * ts)

    def loss(p):
        ys = ol.solve(system, params=p, saveat=1000, solver="tsit5", rtol=RTOL, atol=ATOL,
                      method="interpolating").ys
        return jnp.sum(weights * ys[:, 0]) + jnp.sum(ys[:, 0] ** 2) / 100

    exact = lambda p: jnp.sum(weights * 2.0 * jnp.exp(-p["k"] * ts)) + jnp.sum(  # noqa: E731
        (2.0 * jnp.exp(-p["k"] * ts)) ** 2) / 100
    g, hv = _grad_and_hvp(loss, {"k": 0.8}, {"k": 1.0})
    g_ref, hv_ref = _grad_and_hvp(exact, {"k": 0.8}, {"k": 1.0})
    _check(g, g_ref, GRAD_RTOL)
    _check(hv, hv_ref, HVP_RTOL)


@pytest.mark.parametrize("solver", ["tsit5", pytest.param("kvaerno5", marks=pytest.mark.slow)])
def test_logistic_equation(solver):
    """A nonlinear field: the adjoint's Jacobians read y from the forward interpolant. An
    implicit solver steps the adjoint too (Newton iterations inside every backward step)."""
    p0, v = {"r": 1.3, "K": 2.5}, {"r": 0.4, "K": -1.0}
    system = ol.System(lambda t, y, p: p["r"] * y * (1.0 - y / p["K"]), ("n",), params=p0,
                       y0=[0.1], t_span=(0.0, 6.0), name="logistic")
    ts = jnp.linspace(0.0, 6.0, 40)

    def exact_n(p):
        e = jnp.exp(p["r"] * ts)
        return p["K"] * 0.1 * e / (p["K"] + 0.1 * (e - 1.0))

    def loss_of(n):
        return jnp.sum((n - 1.0) ** 2) + jnp.sum(n**3) / 10

    def loss(p):
        return loss_of(ol.solve(system, params=p, saveat=40, solver=solver, rtol=RTOL,
                                atol=ATOL, method="interpolating").ys[:, 0])

    g, hv = _grad_and_hvp(loss, p0, v)
    g_ref, hv_ref = _grad_and_hvp(lambda p: loss_of(exact_n(p)), p0, v)
    _check(g, g_ref, GRAD_RTOL)
    _check(hv, hv_ref, HVP_RTOL)


def test_stiff_linear_system_with_an_implicit_solver():
    """y1' = -a y1 + y2, y2' = -b y2 with a = 1000: the adjoint is as stiff as the state."""
    p0, v = {"a": 1000.0, "b": 0.7}, {"a": 0.0, "b": 1.0}
    system = ol.System(lambda t, y, p: jnp.stack([-p["a"] * y[0] + y[1], -p["b"] * y[1]]),
                       ("y1", "y2"), params=p0, y0=[1.0, 2.0], t_span=(0.0, 2.0), name="stiff")
    ts = jnp.linspace(0.0, 2.0, 5)

    def exact(p):
        y2 = 2.0 * jnp.exp(-p["b"] * ts)
        y1 = jnp.exp(-p["a"] * ts) + 2.0 * (jnp.exp(-p["b"] * ts) - jnp.exp(-p["a"] * ts)) / (
            p["a"] - p["b"])
        return jnp.stack([y1, y2], axis=1)

    def loss_of(ys):
        return jnp.sum(ys[:, 0] ** 2) + jnp.sum(ys[:, 0] * ys[:, 1])

    def loss(p):
        return loss_of(ol.solve(system, params=p, saveat=5, solver="rodas5", rtol=RTOL,
                                atol=ATOL, method="interpolating").ys)

    g, hv = _grad_and_hvp(loss, p0, v)
    g_ref, hv_ref = _grad_and_hvp(lambda p: loss_of(exact(p)), p0, v)
    _check(g, g_ref, GRAD_RTOL)
    _check(hv, hv_ref, HVP_RTOL)


# --- what the forward pass hands back ----------------------------------------------------------
@pytest.mark.slow
def test_the_primal_is_the_plain_solve_exactly():
    """The gradient's forward pass takes the plain solve's steps (same solver, controller and
    first step), so the loss value under differentiation is the plain solve's, bit for bit, also
    on a chaotic problem where any other step would show."""
    system = ol.gallery.lorenz()
    params = {k: jnp.asarray(v) for k, v in system.params.items()}

    def solve(p, method):
        return ol.solve(system, params=p, t_span=(0.0, 20.0), saveat=300, rtol=1e-6,
                        atol=1e-8, solver="tsit5", method=method)

    plain = solve(params, "interpolating")

    def loss(p):
        sol = solve(p, "interpolating")
        return jnp.sum(sol.ys), (sol.ys, sol.num_steps, sol.num_accepted, sol.t_reached)

    (_, (ys, steps, accepted, t_reached)), _ = jax.value_and_grad(loss, has_aux=True)(params)
    np.testing.assert_array_equal(np.asarray(ys), np.asarray(plain.ys))
    assert int(steps) == int(plain.num_steps) and int(accepted) == int(plain.num_accepted)
    assert float(t_reached) == 20.0


@pytest.mark.parametrize("method", [
    "interpolating", pytest.param(ol.methods.Interpolating(checkpoints=4), marks=pytest.mark.slow)])
def test_a_failed_solve_gives_nan_not_a_wrong_gradient(method):
    """max_steps too small: the solve stops short, and the gradient says so (NaN) rather than
    differentiating the part that was solved."""

    def loss(p):
        return jnp.sum(ol.solve(LINEAR, params=p, saveat=10, solver="tsit5", rtol=RTOL,
                                atol=ATOL, max_steps=20, method=method).ys[:3])

    g = jax.grad(loss)({k: jnp.asarray(v) for k, v in P_LIN.items()})
    assert all(np.isnan(float(x)) for x in g.values())


def test_second_derivative_in_time_is_refused():
    """The forward pass runs inside the solve's JVP rule as plain JAX; a derivative of the
    gradient with respect to t1 must still be refused, not silently wrong."""

    def loss(p, t1):
        return jnp.sum(ol.solve(LINEAR, params=p, t_span=(0.0, t1), saveat=5, solver="tsit5",
                                method="interpolating").ys ** 2)

    p = {k: jnp.asarray(v) for k, v in P_LIN.items()}
    with pytest.raises(MethodError, match="direct"):
        jax.jvp(lambda t1: jax.grad(loss)(p, t1), (4.0,), (1.0,))


# --- memory ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_checkpointed_memory_grows_like_the_square_root_of_max_steps():
    """No buffer of the checkpointed adjoint is sized by max_steps: k checkpoints and one
    segment of max_steps/k steps, so with k = √max_steps memory grows like √max_steps (the
    whole interpolant grows like max_steps)."""
    system = ol.gallery.lorenz()
    params = {k: jnp.asarray(v) for k, v in system.params.items()}

    def planned(max_steps, method):
        def loss(p):
            return jnp.mean(ol.solve(system, params=p, saveat=100, rtol=1e-8, atol=1e-8,
                                     solver="tsit5", max_steps=max_steps, method=method).ys ** 2)

        stats = jax.jit(jax.grad(loss)).lower(params).compile().memory_analysis()
        return stats.temp_size_in_bytes + stats.output_size_in_bytes

    small = planned(10_000, ol.methods.Interpolating(checkpoints=100))
    large = planned(1_000_000, ol.methods.Interpolating(checkpoints=1000))
    whole = planned(10_000, "interpolating")
    assert large < 15 * small, (small, large)  # 100 × the steps, ≈ 10 × the memory
    assert small < whole / 20, (small, whole)
