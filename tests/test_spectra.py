"""ol.hessian_spectrum: dense, Lanczos and stochastic Lanczos quadrature against known spectra."""

import jax.numpy as jnp
import numpy as np
import pytest

import odelab as ol
from odelab.analysis.spectra import Spectrum, hessian_spectrum

N = 2000


@pytest.fixture(scope="module")
def quadratic():
    """f(w) = ½ wᵀ Q diag(λ) Qᵀ w with Q three Householder reflections: H known exactly."""
    rng = np.random.default_rng(1)
    u = rng.standard_normal((3, N))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    lam = np.concatenate([[100.0, 90.0, 80.0, 70.0, 60.0], rng.uniform(1.0, 10.0, N - 7),
                          [0.5, 0.1]])
    uj, lamj = jnp.asarray(u), jnp.asarray(lam)

    def q_t(x):
        for row in uj:
            x = x - 2 * row * (row @ x)
        return x

    def loss(p):
        return 0.5 * jnp.sum(lamj * q_t(p["w"]) ** 2)

    # eigenvector i of H is Q e_i; Q = H1 H2 H3 applied to e_i in reverse order
    def q_col(i):
        e = np.zeros(N)
        e[i] = 1.0
        for row in u[::-1]:
            e = e - 2 * row * (row @ e)
        return e

    return loss, {"w": jnp.asarray(rng.standard_normal(N))}, lam, q_col


def test_lanczos_top5_matches_known_spectrum(quadratic):
    loss, params, lam, q_col = quadratic
    spec = hessian_spectrum(loss, params, k=5, which="largest")
    assert isinstance(spec, Spectrum) and spec.algorithm == "lanczos" and spec.converged
    np.testing.assert_allclose(spec.eigenvalues, lam[:5], rtol=1e-6)
    for i in range(5):
        assert abs(abs(spec.eigenvectors[:, i] @ q_col(i)) - 1.0) < 1e-6
    assert spec.hvps < 100
    assert spec.names[0] == "w[0]" and len(spec.names) == N


def test_lanczos_both_ends_and_condition_number(quadratic):
    loss, params, lam, _ = quadratic
    spec = hessian_spectrum(loss, params, k=2, which="both")
    np.testing.assert_allclose(spec.eigenvalues, [100.0, 90.0, 0.5, 0.1], rtol=1e-6)
    np.testing.assert_allclose(spec.condition_number, 1000.0, rtol=1e-6)
    assert "Spectrum" in spec._repr_html_()


def test_slq_density_and_hutchinson_trace(quadratic):
    loss, params, lam, _ = quadratic
    spec = hessian_spectrum(loss, params, k=1, which="largest", density=True, probes=8,
                            density_steps=30)
    assert abs(spec.trace - lam.sum()) < 4 * spec.trace_stderr + 1e-9
    assert abs(np.trapezoid(spec.density, spec.density_grid) - 1.0) < 1e-3
    mean = np.trapezoid(spec.density * spec.density_grid, spec.density_grid)
    assert abs(mean - lam.mean()) < 0.05 * lam.mean()


@pytest.fixture(scope="module")
def lotka():
    system = ol.gallery.lotka_volterra()
    ts = np.linspace(0.0, 2.0, 8)
    data = np.asarray(ol.solve(system, saveat=ts, t_span=(0.0, 2.0)).ys)

    def loss(p):
        return jnp.sum((ol.solve(system, params=p, saveat=ts, t_span=(0.0, 2.0),
                                 rtol=1e-10, atol=1e-12).ys - data) ** 2)

    p = {k: v * 1.05 for k, v in system.params.items()}
    return loss, p


def test_dense_spectrum_matches_finite_difference_hessian_and_lanczos(lotka):
    loss, p = lotka
    dense = hessian_spectrum(loss, p)
    assert dense.algorithm == "dense" and dense.eigenvalues.size == 4
    # reference: central differences of the (checkpoint) gradient
    names = ol.flat_names(p)
    h = 1e-5
    rows = []
    for name in names:
        plus = ol.gradient(loss, dict(p, **{name: p[name] + h}), method="checkpoint")
        minus = ol.gradient(loss, dict(p, **{name: p[name] - h}), method="checkpoint")
        rows.append([(plus[m] - minus[m]) / (2 * h) for m in names])
    ref = np.linalg.eigvalsh(0.5 * (np.array(rows) + np.array(rows).T))[::-1]
    np.testing.assert_allclose(dense.eigenvalues, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())
    assert dense.directions(0, top=1)[0][0] in names
    lanczos = hessian_spectrum(loss, p, k=1, which="both", algorithm="lanczos")
    np.testing.assert_allclose(lanczos.eigenvalues, dense.eigenvalues[[0, -1]], rtol=1e-6)


def test_spectrum_input_errors(quadratic):
    loss, params, _, _ = quadratic
    with pytest.raises(ol.InputError, match="which"):
        hessian_spectrum(loss, params, which="top")
    with pytest.raises(ol.InputError, match="k="):
        hessian_spectrum(loss, params, k=N + 1)
    with pytest.raises(ol.MethodError):
        hessian_spectrum(loss, params, k=1, method="backsolve")


@pytest.mark.slow
def test_lanczos_top5_matches_dense_on_a_2k_parameter_neural_ode():
    """A neural ODE with 1842 weights: Lanczos (a few dozen HVPs) against the dense Hessian
    (1842 HVPs by reverse over forward sensitivities, in batches) to 1e-6 relative."""
    import jax

    system = ol.gallery.neural_ode(key=jax.random.key(3), width=40, depth=2)
    ts = np.linspace(0.0, 1.0, 6)
    target = np.stack([np.cos(ts), np.sin(ts)], axis=1)

    def loss(p):
        ys = ol.solve(system, params=p, saveat=ts, rtol=1e-10, atol=1e-12, solver="tsit5").ys
        return jnp.mean((ys - target) ** 2)

    n = len(ol.flat_names(system.params))
    assert 1500 < n < 2500
    dense = hessian_spectrum(loss, system.params, algorithm="dense")
    assert dense.eigenvalues.size == n
    lanczos = hessian_spectrum(loss, system.params, k=5, which="largest", algorithm="lanczos")
    assert lanczos.converged and lanczos.hvps < 200
    np.testing.assert_allclose(lanczos.eigenvalues, dense.eigenvalues[:5], rtol=1e-6)
