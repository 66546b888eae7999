"""Learned networks inside a nested 4D-Var descent: hypergradients w.r.t. equinox MLP weights.

The references are central finite differences of the outer loss along a random direction in
the network weights, and costs built directly from each trajectory's observations.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import odelab as ol
from odelab.analysis import bilevel

STEPS = 3  # inner descent steps: enough to couple the network to the result, cheap to compile


@pytest.fixture(scope="module")
def trajectories():
    """Two harmonic-oscillator trajectories (closed form), positions observed, and one cost."""
    system = ol.gallery.harmonic_oscillator(omega=1.0)
    ts = np.linspace(0.0, 1.0, 5)
    rng = np.random.default_rng(3)
    x_true = np.array([[1.0, 0.0], [0.5, -0.8]])
    obs = []
    for q0, p0 in x_true:
        exact = np.stack([q0 * np.cos(ts) + p0 * np.sin(ts),
                          -q0 * np.sin(ts) + p0 * np.cos(ts)], axis=1)
        noisy = exact + 0.05 * rng.standard_normal(exact.shape)
        noisy[:, 1] = np.nan  # only positions are observed
        obs.append(noisy)
    obs = np.stack(obs)
    backgrounds = x_true + np.array([[0.4, 0.3], [-0.3, 0.5]])
    cost = bilevel.fourdvar_cost(system, ts, obs[0], noise_std=1.0, background=backgrounds[0],
                                 background_std=1.0, rtol=1e-10, atol=1e-12)
    data = {"obs": jnp.asarray(obs), "x_b": jnp.asarray(backgrounds),
            "x_true": jnp.asarray(x_true)}
    return system, ts, cost, data


@pytest.fixture(scope="module")
def networks():
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    precond = eqx.nn.MLP(2, 2, 4, 1, activation=jnp.tanh, key=keys[0])
    prior = eqx.nn.MLP(2, 2, 4, 1, activation=jnp.tanh, key=keys[1])
    return {"log_eta": jnp.log(0.2), "precond": precond, "prior": prior}


def _analysis(cost, theta, member):
    # the prior network shifts the background; the preconditioner network adds to the gradient
    x_b = member["x_b"] + 0.3 * theta["prior"](member["x_b"])
    inner = {"observations": member["obs"], "background": x_b,
             "precond": theta["precond"]}
    return bilevel.argmin(cost, x_b, inner, steps=STEPS, step_size=jnp.exp(theta["log_eta"]),
                          preconditioner=lambda g, th: g + 0.3 * th["precond"](g))


def _outer(cost):
    def loss(theta, data):
        xs = jax.vmap(lambda m: _analysis(cost, theta, m))(data)
        return jnp.mean(jnp.sum((xs - data["x_true"]) ** 2, axis=1))

    return loss


def test_observations_in_theta_give_each_trajectorys_own_cost(trajectories):
    system, ts, cost, data = trajectories
    x = jnp.array([0.7, 0.2])
    for i in range(2):
        own = bilevel.fourdvar_cost(system, ts, np.asarray(data["obs"][i]), noise_std=1.0,
                                    background=data["x_b"][i], background_std=1.0,
                                    rtol=1e-10, atol=1e-12)
        shared = cost(x, {"observations": data["obs"][i], "background": data["x_b"][i]})
        np.testing.assert_allclose(shared, own(x, {}), rtol=1e-12)
    batched = jax.vmap(lambda o, b: cost(x, {"observations": o, "background": b}))(
        data["obs"], data["x_b"])
    np.testing.assert_allclose(batched[1], cost(x, {"observations": data["obs"][1],
                                                    "background": data["x_b"][1]}), rtol=1e-12)
    with pytest.raises(ol.InputError, match="observations"):
        cost(x, {"observations": data["obs"][0][:3]})


def test_hypergradient_wrt_network_weights_matches_finite_differences(trajectories, networks):
    _, _, cost, data = trajectories
    loss = _outer(cost)
    theta = networks
    hyper = ol.gradient(lambda th: loss(th, data), theta)

    diff, static = eqx.partition(theta, eqx.is_inexact_array)
    leaves, treedef = jax.tree_util.tree_flatten(diff)
    rng = np.random.default_rng(7)
    direction = [jnp.asarray(rng.standard_normal(np.shape(x))) for x in leaves]
    # only the network weights move: the step size's direction is zero
    direction = jax.tree_util.tree_unflatten(treedef, direction)
    direction["log_eta"] = jnp.zeros(())
    hyper_diff = eqx.filter(hyper, eqx.is_inexact_array)
    along = sum(float(jnp.vdot(a, b)) for a, b in zip(jax.tree_util.tree_leaves(hyper_diff),
                                                      jax.tree_util.tree_leaves(direction)))

    f = eqx.filter_jit(lambda d: loss(eqx.combine(d, static), data))
    h = 1e-5
    up = jax.tree_util.tree_map(lambda x, v: x + h * v, diff, direction)
    down = jax.tree_util.tree_map(lambda x, v: x - h * v, diff, direction)
    fd = float((f(up) - f(down)) / (2 * h))
    assert abs(along) > 1e-3  # the networks really do change the analysis
    assert abs(along - fd) <= 1e-5 * abs(fd)


def test_fit_trains_network_weights_in_theta(trajectories, networks):
    _, _, cost, data = trajectories
    loss = _outer(cost)
    result = ol.fit(loss, networks, data=data, optimizer=optax.adam(0.05), steps=4,
                    progress=False)
    assert isinstance(result.best_params["prior"], eqx.nn.MLP)
    assert result.best_loss < result.losses[0]
    np.testing.assert_allclose(loss(result.best_params, data), result.best_loss, rtol=1e-10)
