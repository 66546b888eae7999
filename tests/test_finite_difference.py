"""Finite differences of a whole objective (odelab/derivatives/finite_difference.py).

References are closed forms, never odelab's own derivatives:
* a linear system, dx/dt = -a x + b y, dy/dt = -b x - a y: a decaying rotation, solved by hand;
* Lotka–Volterra through its conserved quantity V = δx − γ ln x + βy − α ln y: exp(2·V(y(T)))
  equals exp(2·V(y0)) for every parameter value, so its derivatives are those of a closed form
  although every evaluation goes through a solve.

The solves inside the losses pin tight tolerances themselves, while the derivative calls keep
odelab's default rtol (1e-6): the steps must follow the tolerance the solves actually ran at.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import odelab as ol
from odelab.derivatives import difference_estimate
from odelab.methods import FiniteDifference
from odelab.solve import solve_defaults, tolerances_used

T_ROT = 10.0
ROTATION = ol.System(
    lambda t, y, p: jnp.stack([-p["a"] * y[0] + p["b"] * y[1], -p["b"] * y[0] - p["a"] * y[1]]),
    states=("x", "y"), params={"a": 0.1, "b": 1.0}, y0=[1.0, 0.5], t_span=(0.0, T_ROT),
    name="rotation",
)
LV = ol.gallery.lotka_volterra()


def rotation_loss(p, rtol=1e-12):
    y = ol.solve(ROTATION, params=p, saveat=2, rtol=rtol, atol=rtol * 1e-2).ys[-1]
    return y[0] + 0.3 * y[1] ** 2


def rotation_exact(p):
    decay = jnp.exp(-p["a"] * T_ROT)
    c, s = jnp.cos(p["b"] * T_ROT), jnp.sin(p["b"] * T_ROT)
    x, y = decay * (c + 0.5 * s), decay * (0.5 * c - s)
    return x + 0.3 * y**2


def conserved(y, p):
    return (p["delta"] * y[0] - p["gamma"] * jnp.log(y[0]) + p["beta"] * y[1]
            - p["alpha"] * jnp.log(y[1]))


def lv_loss(p):
    y = ol.solve(LV, params=p, saveat=2, rtol=1e-11, atol=1e-13).ys[-1]
    return jnp.exp(2.0 * conserved(y, p))


def lv_exact(p):
    return jnp.exp(2.0 * conserved(jnp.asarray(LV.y0), p))


PROBLEMS = {
    "rotation": (rotation_loss, rotation_exact, {"a": 0.1, "b": 1.0}, [0.6, -0.8]),
    "lotka-volterra": (lv_loss, lv_exact, {"alpha": 1.5, "beta": 1.0, "gamma": 3.0,
                                           "delta": 1.0}, [0.3, -0.5, 0.7, 0.2]),
}


def flat(tree, keys):
    return np.array([float(tree[k]) for k in keys])


def relative(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b))


@pytest.mark.parametrize("request_", ["gradient", "hvp", "hessian"])
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_differences_agree_with_closed_forms_when_the_solves_pin_tight_tolerances(problem,
                                                                                 request_):
    loss, exact, values, vector = PROBLEMS[problem]
    p = {k: jnp.asarray(v) for k, v in values.items()}
    keys = sorted(p)
    v = dict(zip(keys, map(jnp.asarray, vector)))
    if request_ == "gradient":
        got = flat(ol.gradient(loss, p, method="finite-difference"), keys)
        want = flat(jax.grad(exact)(p), keys)
    elif request_ == "hvp":
        got = flat(ol.hvp(loss, p, v, method="finite-difference"), keys)
        want = flat(jax.jvp(jax.grad(exact), (p,), (v,))[1], keys)
    else:
        got = np.asarray(ol.hessian(loss, p, method="finite-difference"))
        h = jax.hessian(exact)(p)
        want = np.array([[float(h[i][j]) for j in keys] for i in keys])
    assert relative(got, want) < 1e-6, (problem, request_, relative(got, want))


def test_the_noise_balanced_step_alone_follows_the_pinned_tolerance_too():
    p = {"a": jnp.asarray(0.1), "b": jnp.asarray(1.0)}
    got = flat(ol.gradient(rotation_loss, p, method=FiniteDifference(step="noise")), "ab")
    assert relative(got, flat(jax.grad(rotation_exact)(p), "ab")) < 1e-6


def test_each_traced_solve_reports_the_tolerance_it_ran_at():
    seen = []

    @jax.jit
    def program(a, rtol):
        p = {"a": a, "b": 1.0}
        with solve_defaults(rtol=rtol), tolerances_used() as used:
            ol.solve(ROTATION, params=p, saveat=2, rtol=1e-11)  # pins its own
            ol.solve(ROTATION, params=p, saveat=2)  # takes the enclosing call's
        seen.append(len(used))
        return jnp.stack([jnp.asarray(u, dtype=float) for u in used])

    used = program(jnp.asarray(0.1), jnp.asarray(3e-5))
    np.testing.assert_allclose(np.asarray(used), [1e-11, 3e-5])
    assert seen == [2]


def test_a_searched_estimate_carries_an_honest_error_estimate():
    p = {"a": jnp.asarray(0.1), "b": jnp.asarray(1.0)}
    exact = flat(jax.grad(rotation_exact)(p), "ab")
    # solves at a looser pinned rtol: noisier values, a larger (but honest) error estimate
    loose = lambda q: rotation_loss(q, rtol=1e-8)  # noqa: E731
    est = difference_estimate(loose, p)
    assert est.noise == pytest.approx(1e-8)
    # the estimate covers the differencing; the solves' own error (about the noise level,
    # smooth in the parameters, so differences cannot see it) comes on top
    solver_error = 10 * est.noise * np.abs(exact)
    assert np.all(np.abs(est.values - exact) <= 10 * est.errors + solver_error)
    assert np.all(est.errors < 1e-6 * np.abs(exact))
    tight = difference_estimate(rotation_loss, p)
    assert tight.noise == pytest.approx(1e-12) and np.all(tight.errors < est.errors)
    np.testing.assert_allclose(tight.values, exact, rtol=1e-8)
    along = difference_estimate(rotation_loss, p, {"a": 0.6, "b": -0.8})
    assert along.values.shape == (1,)
    assert along.values[0] == pytest.approx(0.6 * exact[0] - 0.8 * exact[1], rel=1e-8)


def test_max_steps_reaches_the_solves_inside_a_derivative_call():
    def loss(p):  # the solve names no max_steps: the derivative call's applies
        return ol.solve(ROTATION, params=p, saveat=2, rtol=1e-10).ys[-1, 0]

    p = {"a": 0.1, "b": 1.0}
    with pytest.raises(ol.SolveError, match="max_steps"):
        ol.gradient(loss, p, method="forward", max_steps=10)
    g = ol.gradient(loss, p, method="forward", max_steps=5000)
    exact = jax.grad(lambda q: jnp.exp(-q["a"] * T_ROT) * (
        jnp.cos(q["b"] * T_ROT) + 0.5 * jnp.sin(q["b"] * T_ROT)))(p)
    np.testing.assert_allclose(flat(g, "ab"), flat(exact, "ab"), rtol=1e-7)
    with pytest.raises(ol.InputError, match="`max_steps=0`"):
        ol.gradient(loss, p, max_steps=0)
