"""ol.fit (loop, checkpoints, exact resume), gradients inside the field, Newton–Krylov."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import odelab as ol
from odelab.analysis.fit import FitResult, fit, newton_krylov
from odelab.gallery._networks import _hamiltonian_field


# ------------------------------------------------------------------ a cheap loss with mini-batches
@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((24, 3))
    w_true = np.array([1.0, -2.0, 0.5])
    ys = xs @ w_true + 0.01 * rng.standard_normal(24)
    calls = []

    def loss(p, batch):
        calls.append(1)  # one Python call per trace
        return jnp.mean((batch["x"] @ p["w"] + p["b"] - batch["y"]) ** 2)

    return loss, {"x": xs, "y": ys}, {"w": np.zeros(3), "b": 0.0}, w_true, calls


def _run(regression, steps, **kw):
    loss, data, p0, _, _ = regression
    return fit(loss, p0, data, optimizer=optax.adam(0.05), steps=steps, batch_size=6,
               progress=False, seed=3, **kw)


def _same(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y))
                                      for x, y in zip(la, lb))


def test_fit_trains_and_compiles_once(regression):
    _, _, _, w_true, calls = regression
    before = len(calls)
    result = _run(regression, 300)
    assert len(calls) - before <= 2  # traced once (plus the gradient's own trace), not per step
    assert isinstance(result, FitResult) and result.steps == 300 and not result.interrupted
    np.testing.assert_allclose(result.params["w"], w_true, atol=0.05)
    assert result.best_loss == min(result.losses) and len(result.losses) == 300
    assert "FitResult" in result._repr_html_()


def test_resume_is_bit_for_bit(regression, tmp_path):
    full = _run(regression, 14)
    stopped = _run(regression, 14, checkpoint_dir=tmp_path, checkpoint_every=3,
                   callback=lambda ev: ev.step < 5)
    assert stopped.interrupted and stopped.steps == 6 and "callback" in stopped.stop_reason
    resumed = _run(regression, 14, checkpoint_dir=tmp_path, checkpoint_every=3)
    assert resumed.steps == 14 and not resumed.interrupted
    assert _same(resumed.params, full.params)
    assert _same(resumed.opt_state, full.opt_state)
    assert _same(resumed.best_params, full.best_params)
    assert resumed.losses == full.losses


def test_keyboard_interrupt_and_stop_keep_best_and_checkpoint(regression, tmp_path):
    full = _run(regression, 10)

    def interrupt(ev):
        if ev.step == 3:
            raise KeyboardInterrupt

    out = _run(regression, 10, checkpoint_dir=tmp_path / "a", callback=interrupt)
    assert out.interrupted and "KeyboardInterrupt" in out.stop_reason and out.steps == 4
    assert out.best_loss == min(out.losses)
    resumed = _run(regression, 10, checkpoint_dir=tmp_path / "a")
    assert _same(resumed.params, full.params) and _same(resumed.opt_state, full.opt_state)

    out = _run(regression, 10, callback=lambda ev: ev.result.stop())
    assert out.interrupted and out.steps == 1 and "stop()" in out.stop_reason


def test_fit_input_errors(regression, tmp_path):
    loss, data, p0, _, _ = regression
    with pytest.raises(ol.InputError, match="batch_size"):
        fit(loss, p0, data, batch_size=100, steps=1, progress=False)
    with pytest.raises(ol.InputError, match="params"):
        fit(loss, None, data, steps=1, progress=False)
    with pytest.raises(ol.InputError, match="data"):
        fit(ol.gallery.exponential_decay(), steps=1, progress=False)
    _run(regression, 2, checkpoint_dir=tmp_path)
    with pytest.raises(ol.InputError, match="seed"):
        fit(loss, p0, data, optimizer=optax.adam(0.05), steps=3, batch_size=6, progress=False,
            seed=4, checkpoint_dir=tmp_path)


# ------------------------------------------------------------------ fitting a System to data
def test_fit_system_recovers_decay_rate():
    system = ol.gallery.exponential_decay(k=0.5)
    ts = np.linspace(0.0, 2.0, 9)
    y0s = np.array([[1.0], [2.0]])
    ys = y0s[:, None, :] * np.exp(-0.5 * ts)[None, :, None]  # closed form
    seen = []
    out = fit(system, {"k": 0.8}, (ts, ys), optimizer=optax.adam(0.05), steps=150,
              progress=False, callback=lambda ev: seen.append(ev.predictions.shape),
              callback_every=50)
    assert abs(float(out.best_params["k"]) - 0.5) < 2e-3
    assert seen and seen[0] == (2, 9, 1)


# ------------------------------------------------------------------ gradients inside the field
class _Energy(eqx.Module):
    w1: jax.Array
    b1: jax.Array
    w2: jax.Array

    def __call__(self, z):
        return jnp.sum(self.w2 * jax.nn.softplus(self.w1 @ z + self.b1))


@pytest.fixture(scope="module")
def hamiltonian():
    k1, k2 = jax.random.split(jax.random.key(0))
    net = _Energy(0.5 * jax.random.normal(k1, (6, 2)), jnp.zeros(6),
                  0.5 * jax.random.normal(k2, (6,)))
    system = ol.System(_hamiltonian_field, states=("q", "p"), params=net, y0=[1.0, 0.0],
                       t_span=(0.0, 1.0), stiff=False, name="hnn")
    ts = np.linspace(0.0, 1.0, 6)
    target = np.stack([np.cos(ts), -np.sin(ts)], axis=1)[None]

    def loss(p):
        return jnp.mean((ol.solve(system, params=p, saveat=ts, rtol=1e-10, atol=1e-12).ys
                         - target[0]) ** 2)

    return system, net, ts, target, loss


@pytest.mark.parametrize("method", ["checkpoint", "backsolve"])
def test_grad_inside_vector_field_matches_finite_differences(hamiltonian, method):
    _, net, _, _, loss = hamiltonian
    g = ol.gradient(loss, net, method=method)
    flat, unravel = jax.flatten_util.ravel_pytree(net)
    direction = np.random.default_rng(1).standard_normal(flat.size)
    direction /= np.linalg.norm(direction)
    h = 1e-4
    f = jax.jit(lambda x: loss(unravel(x)))
    fd = (f(flat + h * direction) - f(flat - h * direction)) / (2 * h)
    ad = jax.flatten_util.ravel_pytree(g)[0] @ direction
    np.testing.assert_allclose(ad, fd, rtol=1e-5)


def test_hamiltonian_network_trains_and_second_order(hamiltonian):
    system, net, ts, target, loss = hamiltonian
    out = fit(system, None, (ts, target), method="backsolve", steps=15,
              optimizer=optax.adam(1e-2), progress=False)
    assert out.losses[-1] < out.losses[0]
    # second order through a field that itself takes a gradient: reverse over forward
    # sensitivities, against central differences of the (separately checked) gradient
    flat, unravel = jax.flatten_util.ravel_pytree(net)
    v = np.random.default_rng(2).standard_normal(flat.size)
    v /= np.linalg.norm(v)
    hv = jax.flatten_util.ravel_pytree(ol.hvp(loss, net, unravel(jnp.asarray(v))))[0]
    grad = jax.jit(lambda x: jax.flatten_util.ravel_pytree(
        ol.gradient(loss, unravel(x), method="checkpoint"))[0])
    h = 1e-4
    fd = (grad(flat + h * v) - grad(flat - h * v)) / (2 * h)
    np.testing.assert_allclose(hv, fd, rtol=1e-5, atol=1e-6 * np.max(np.abs(fd)))
    # backsolve has no second-order route: refused up front, naming the ones that do
    with pytest.raises(ol.MethodError, match="checkpoint"):
        ol.hvp(loss, net, net, method="backsolve")


# ------------------------------------------------------------------ Newton–Krylov
def test_newton_krylov_recovers_parameters_fast():
    system = ol.gallery.lotka_volterra()
    truth = dict(system.params)
    ts = np.linspace(0.0, 3.0, 16)
    data = np.asarray(ol.solve(system, saveat=ts, t_span=(0.0, 3.0), rtol=1e-10,
                               atol=1e-12).ys)

    def loss(p):
        sol = ol.solve(system, params=p, saveat=ts, t_span=(0.0, 3.0), rtol=1e-10, atol=1e-12)
        return 0.5 * jnp.sum((sol.ys - data) ** 2)

    start = {k: v * f for (k, v), f in zip(truth.items(), (1.1, 0.92, 1.05, 0.95))}
    out = newton_krylov(loss, start, gtol=1e-7, maxiter=25)
    assert out.converged, out.message
    assert out.iterations <= 15
    for k in truth:
        assert abs(float(out.params[k]) - truth[k]) < 1e-6 * max(1.0, abs(truth[k]))
