"""ol.gradient_field and ol.solve_ensemble: vmapped, chunked, sharded over (simulated) devices."""

import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

import odelab as ol
from odelab.analysis.fields import GradientField, gradient_field, solve_ensemble

TS = np.linspace(0.0, 2.0, 5)


@pytest.fixture(scope="module")
def decay():
    system = ol.gallery.exponential_decay()
    target = 1.5 * np.exp(-0.7 * TS)

    def loss(p):  # y(t) = y0 e^{-k t} with y0 = p["y0"]: the loss has a closed form
        sol = ol.solve(system, y0=jnp.reshape(p["y0"], (1,)), params={"k": p["k"]}, saveat=TS,
                       t_span=(0.0, 2.0), rtol=1e-10, atol=1e-12)
        return jnp.sum((sol.ys[:, 0] - target) ** 2)

    return system, loss, target


def _closed_form(k, y0, target):
    y = y0 * np.exp(-k * TS)
    r = y - target
    return np.sum(r**2), np.sum(2 * r * (-TS) * y), np.sum(2 * r * np.exp(-k * TS))


def test_gradient_field_matches_closed_form(decay):
    _, loss, target = decay
    seen = []
    field = gradient_field(loss, {"k": 0.5, "y0": 1.0}, x=("k", 0.1, 2.0), y=("y0", 0.5, 2.0),
                           n=6, log=(True, False), chunk_size=16,
                           progress=lambda done, total: seen.append((done, total)))
    assert isinstance(field, GradientField) and field.loss.shape == (6, 6)
    assert field.log_x and not field.log_y
    np.testing.assert_allclose(field.x, np.geomspace(0.1, 2.0, 6))
    for i in range(6):
        for j in range(6):
            ref = _closed_form(field.x[j], field.y[i], target)
            np.testing.assert_allclose(
                [field.loss[i, j], field.dloss_dx[i, j], field.dloss_dy[i, j]], ref, rtol=1e-7)
    assert seen == [(16, 36), (32, 36), (36, 36)]
    assert not field.failed.any()
    assert field.to_dict()["x_name"] == "k" and "GradientField" in field._repr_html_()
    assert abs(field.minimum["k"] - 0.7) < 0.3


def test_gradient_field_input_errors(decay):
    _, loss, _ = decay
    with pytest.raises(ol.InputError, match="Did you mean 'k'"):
        gradient_field(loss, {"k": 0.5, "y0": 1.0}, x=("kk", 0.1, 1), y=("y0", 0, 1))
    with pytest.raises(ol.InputError, match="log"):
        gradient_field(loss, {"k": 0.5, "y0": 1.0}, x=("k", -1, 1), y=("y0", 0, 1), log=True)
    with pytest.raises(ol.InputError, match="two different"):
        gradient_field(loss, {"k": 0.5, "y0": 1.0}, x=("k", 0.1, 1), y=("k", 0.1, 1))


def test_solve_ensemble_matches_closed_form(decay):
    system, _, _ = decay
    ks = np.linspace(0.1, 1.0, 7)
    y0s = np.linspace(1.0, 2.0, 7)[:, None]
    sols = solve_ensemble(system, params_batch={"k": ks}, y0_batch=y0s, saveat=TS,
                          t_span=(0.0, 2.0), rtol=1e-10, atol=1e-12, chunk_size=4)
    assert sols.ys.shape == (7, 5, 1)
    np.testing.assert_allclose(sols.ys[..., 0], y0s * np.exp(-ks[:, None] * TS), rtol=1e-8)
    with pytest.raises(ol.InputError, match="leading"):
        solve_ensemble(system, params_batch={"k": ks}, y0_batch=y0s[:3])
    with pytest.raises(ol.InputError, match="Did you mean"):
        solve_ensemble(system, params_batch={"kk": ks})


def test_sharded_over_eight_simulated_devices():
    script = textwrap.dedent("""
        import numpy as np, jax, jax.numpy as jnp
        import odelab as ol
        from odelab.analysis.fields import device_mesh, shard_batch, pad_batch, solve_ensemble
        from odelab.analysis.spectra import _Operator
        assert len(jax.devices()) == 8, jax.devices()
        mesh = device_mesh()
        x = shard_batch(pad_batch(jnp.arange(10.0), 16), mesh)
        assert len(x.sharding.device_set) == 8 and len(x.addressable_shards) == 8
        system = ol.gallery.exponential_decay()
        ks = np.linspace(0.1, 1.0, 10)
        ts = np.linspace(0.0, 1.0, 4)
        sols = solve_ensemble(system, params_batch={"k": ks}, saveat=ts, t_span=(0.0, 1.0),
                              rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(sols.ys[..., 0], np.exp(-ks[:, None] * ts), rtol=1e-8)
        d = jnp.arange(1.0, 21.0)
        op = _Operator(lambda p: 0.5 * jnp.sum(d * p["w"] ** 2), {"w": jnp.ones(20)},
                       "auto", None, None, None)
        v = np.random.default_rng(0).standard_normal((5, 20))
        np.testing.assert_allclose(op.batch(v), v * np.arange(1.0, 21.0), rtol=1e-12)
        print("OK")
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]
