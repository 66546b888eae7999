"""Nested optimisation: hypergradients through an inner 4D-Var descent vs finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import odelab as ol
from odelab.analysis import bilevel


@pytest.fixture(scope="module")
def fourdvar():
    system = ol.gallery.harmonic_oscillator(omega=1.0)
    ts = np.linspace(0.0, 1.5, 6)
    x_true = np.array([1.0, 0.0])
    exact = np.stack([np.cos(ts), -np.sin(ts)], axis=1)  # closed form
    obs = exact + 0.05 * np.random.default_rng(0).standard_normal(exact.shape)
    obs[:, 1] = np.nan  # only positions are observed
    guess = jnp.array([0.6, 0.4])
    cost = bilevel.fourdvar_cost(system, ts, obs, noise_std=1.0, background=guess,
                                 background_std=1.0, rtol=1e-10, atol=1e-12)
    return cost, guess, jnp.asarray(x_true)


def _fd(f, theta, h=1e-6):
    out = {}
    for k, v in theta.items():
        v = np.atleast_1d(np.asarray(v, dtype=float))
        grads = []
        for i in range(v.size):
            e = np.zeros_like(v)
            e[i] = h
            shape = np.shape(theta[k])
            up = dict(theta, **{k: jnp.asarray((v + e).reshape(shape))})
            down = dict(theta, **{k: jnp.asarray((v - e).reshape(shape))})
            grads.append((f(up) - f(down)) / (2 * h))
        out[k] = np.array(grads).reshape(np.shape(theta[k]))
    return out


def test_unrolled_hypergradient_of_step_size_and_preconditioner(fourdvar):
    cost, guess, x_true = fourdvar

    def outer(theta):
        x = bilevel.argmin(cost, guess, theta, steps=4, step_size=theta["eta"],
                           preconditioner=lambda g, th: th["diag"] * g)
        return jnp.sum((x - x_true) ** 2)

    theta = {"eta": jnp.asarray(0.2), "diag": jnp.array([1.0, 0.5])}
    hyper = ol.gradient(outer, theta)
    fd = _fd(jax.jit(outer), theta)
    for k in theta:
        np.testing.assert_allclose(hyper[k], fd[k], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("method", ["auto", "direct"])  # forward (2 params) and reverse routes
def test_implicit_hypergradient_matches_finite_differences(fourdvar, method):
    cost, guess, x_true = fourdvar

    def outer(theta):
        x = bilevel.argmin(cost, guess, theta, steps=150, step_size=0.25, mode="implicit")
        return jnp.sum((x - x_true) ** 2)

    theta = {"background": guess}
    hyper = ol.gradient(outer, theta, method=method)
    fd = _fd(jax.jit(outer), theta)
    np.testing.assert_allclose(hyper["background"], fd["background"], rtol=1e-5)


def test_bilevel_errors(fourdvar):
    cost, guess, _ = fourdvar
    with pytest.raises(ol.InputError, match="mode"):
        bilevel.argmin(cost, guess, {}, mode="both")
    with pytest.raises(ol.MethodError, match="Hessian-vector"):
        bilevel.argmin(cost, guess, {}, mode="implicit", method="checkpoint")
    with pytest.raises(ol.InputError, match="observations"):
        bilevel.fourdvar_cost(ol.gallery.lorenz(), [0.0, 1.0], np.zeros((2, 2)))


def test_fit_with_few_parameters_through_an_unrolled_inner_descent(fourdvar):
    """ol.fit on one hyperparameter (the forward route) with gradients nested inside.

    One plain gradient-descent step must move the parameter by -lr × the hypergradient, which
    is checked against central finite differences of the outer loss.
    """
    import optax

    cost, guess, x_true = fourdvar

    def outer(theta):
        x = bilevel.argmin(cost, guess, theta, steps=3, step_size=theta["eta"])
        return jnp.sum((x - x_true) ** 2)

    theta = {"eta": jnp.asarray(0.2)}
    lr = 0.1
    result = ol.fit(outer, theta, optimizer=optax.sgd(lr), steps=1, progress=False)
    fd = _fd(jax.jit(outer), theta)["eta"]
    np.testing.assert_allclose(float(result.params["eta"]), 0.2 - lr * float(fd), rtol=1e-7)
