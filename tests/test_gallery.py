"""The gallery: every system builds, its vector field matches an independent numpy version, and
conserved quantities are conserved by the field. No ODE is solved here: only fields are evaluated.
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from odelab import InputError, System, gallery

REQUIRED = {
    "lotka_volterra", "lorenz", "van_der_pol", "van_der_pol_stiff", "robertson",
    "fitzhugh_nagumo", "hodgkin_huxley", "damped_pendulum", "sir", "brusselator", "oregonator",
    "hires", "neural_ode", "hamiltonian_network", "harmonic_oscillator", "exponential_decay",
}  # fmt: skip
STIFF = {"robertson", "oregonator", "hires", "van_der_pol_stiff"}
# the 13-state bursting neuron is compared with scipy's DOP853 in tests/test_check.py
CHECKED_ELSEWHERE = {"bursting_neuron"}


@pytest.fixture(scope="module")
def systems():
    return {name: build() for name, build in gallery.GALLERY.items()}


def field(system, y, params=None):
    return np.asarray(system(0.0, jnp.asarray(y, dtype=float), params))


# -- independent numpy versions of the classic fields, written from the published equations -------
def np_lotka_volterra(y, p):
    x, z = y
    return [p["alpha"] * x - p["beta"] * x * z, p["delta"] * x * z - p["gamma"] * z]


def np_lorenz(y, p):
    x, u, w = y
    return [p["sigma"] * (u - x), x * (p["rho"] - w) - u, x * u - p["beta"] * w]


def np_van_der_pol(y, p):
    x, v = y
    return [v, p["mu"] * (1 - x * x) * v - x]


def np_robertson(y, p):
    a, b, c = y
    return [-0.04 * a + 1e4 * b * c, 0.04 * a - 1e4 * b * c - 3e7 * b * b, 3e7 * b * b]


def np_hires(y, p):  # the IVP test set's form, with its numbers written out
    return [
        -1.71 * y[0] + 0.43 * y[1] + 8.32 * y[2] + 0.0007,
        1.71 * y[0] - 8.75 * y[1],
        -10.03 * y[2] + 0.43 * y[3] + 0.035 * y[4],
        8.32 * y[1] + 1.71 * y[2] - 1.12 * y[3],
        -1.745 * y[4] + 0.43 * y[5] + 0.43 * y[6],
        -280 * y[5] * y[7] + 0.69 * y[3] + 1.71 * y[4] - 0.43 * y[5] + 0.69 * y[6],
        280 * y[5] * y[7] - 1.81 * y[6],
        -280 * y[5] * y[7] + 1.81 * y[6],
    ]


def np_oregonator(y, p):  # Hairer & Wanner's OREGO
    a, b, c = y
    return [77.27 * (b + a * (1 - 8.375e-6 * a - b)), (c - (1 + a) * b) / 77.27, 0.161 * (a - c)]


def np_sir(y, p):
    s, i, r = y
    n = s + i + r
    return [-p["beta"] * s * i / n, p["beta"] * s * i / n - p["gamma"] * i, p["gamma"] * i]


def np_damped_pendulum(y, p):
    theta, omega = y
    return [omega, -p["g"] / p["length"] * math.sin(theta) - p["damping"] * omega]


def np_brusselator(y, p):
    x, z = y
    return [p["a"] + x * x * z - (p["b"] + 1) * x, p["b"] * x - x * x * z]


def np_fitzhugh_nagumo(y, p):
    v, w = y
    return [v - v**3 / 3 - w + p["current"], (v + p["a"] - p["b"] * w) / p["tau"]]


def np_hodgkin_huxley(y, p):
    v, m, h, n = y
    am = 0.1 * (v + 40) / (1 - math.exp(-(v + 40) / 10))
    bm = 4 * math.exp(-(v + 65) / 18)
    ah = 0.07 * math.exp(-(v + 65) / 20)
    bh = 1 / (1 + math.exp(-(v + 35) / 10))
    an = 0.01 * (v + 55) / (1 - math.exp(-(v + 55) / 10))
    bn = 0.125 * math.exp(-(v + 65) / 80)
    current = (
        p["current"]
        - p["g_na"] * m**3 * h * (v - p["e_na"])
        - p["g_k"] * n**4 * (v - p["e_k"])
        - p["g_l"] * (v - p["e_l"])
    )
    return [
        current / p["c_m"],
        am * (1 - m) - bm * m,
        ah * (1 - h) - bh * h,
        an * (1 - n) - bn * n,
    ]


def np_harmonic_oscillator(y, p):
    return [y[1], -(p["omega"] ** 2) * y[0]]


def np_exponential_decay(y, p):
    return [-p["k"] * y[0]]


def np_mlp(mlp, x, activation):
    """Forward pass of an equinox MLP from its weights, in numpy."""
    h = np.asarray(x, dtype=float)
    for i, layer in enumerate(mlp.layers):
        h = np.asarray(layer.weight) @ h + np.asarray(layer.bias)
        if i < len(mlp.layers) - 1:
            h = activation(h)
    return h


def np_neural_ode(y, mlp):
    return np_mlp(mlp, y, np.tanh)


def np_hamiltonian(mlp, z):
    return float(np_mlp(mlp, z, lambda h: np.logaddexp(0.0, h))[0])  # softplus


def np_hamiltonian_network(y, mlp, step=1e-5):
    """(dH/dp, -dH/dq) by central differences of the numpy H."""
    y = np.asarray(y, dtype=float)
    grad = np.array(
        [
            (np_hamiltonian(mlp, y + step * e) - np_hamiltonian(mlp, y - step * e)) / (2 * step)
            for e in np.eye(len(y))
        ]
    )
    dof = len(y) // 2
    return np.concatenate([grad[dof:], -grad[:dof]])


REFERENCES = {
    "lotka_volterra": np_lotka_volterra,
    "lorenz": np_lorenz,
    "van_der_pol": np_van_der_pol,
    "van_der_pol_stiff": np_van_der_pol,
    "robertson": np_robertson,
    "hires": np_hires,
    "oregonator": np_oregonator,
    "sir": np_sir,
    "damped_pendulum": np_damped_pendulum,
    "brusselator": np_brusselator,
    "fitzhugh_nagumo": np_fitzhugh_nagumo,
    "hodgkin_huxley": np_hodgkin_huxley,
    "harmonic_oscillator": np_harmonic_oscillator,
    "exponential_decay": np_exponential_decay,
    "neural_ode": np_neural_ode,
    "hamiltonian_network": np_hamiltonian_network,
}


def sample_states(system, count=5, seed=0):
    """y0 and `count` points around it (spread ±30% of each state's scale)."""
    rng = np.random.default_rng(seed)
    y0 = np.asarray(system.y0)
    scale = 0.3 * np.maximum(np.abs(y0), 1.0)
    return [y0] + [y0 + scale * rng.uniform(-1, 1, size=y0.shape) for _ in range(count)]


# -- structure ------------------------------------------------------------------------------------
def test_the_gallery_lists_every_required_system():
    assert REQUIRED <= set(gallery.GALLERY)
    assert gallery.names() == sorted(gallery.GALLERY)
    assert set(REFERENCES) == set(gallery.GALLERY) - CHECKED_ELSEWHERE  # a reference below
    for name, build in gallery.GALLERY.items():
        assert getattr(gallery, name) is build


@pytest.mark.parametrize("name", sorted(gallery.GALLERY))
def test_system_builds_with_metadata(systems, name):
    system = systems[name]
    assert isinstance(system, System)
    assert system.name == name
    assert system.stiff is (name in STIFF)
    assert 20 < len(system.description) < 400
    assert system.t_span[0] < system.t_span[1]
    for param in system.param_names:
        info = system.param_info[param]
        assert info.lo <= system.params[param] <= info.hi, param
        assert info.description, param
        assert not info.log or info.lo > 0, param


@pytest.mark.parametrize("name", sorted(REQUIRED - {"harmonic_oscillator", "exponential_decay"}))
def test_classic_systems_cite_their_source(systems, name):
    assert re.search(r"\b(1[89]\d\d|20\d\d)\b", systems[name].description), name


@pytest.mark.parametrize("name", sorted(set(gallery.GALLERY) - CHECKED_ELSEWHERE))
def test_vector_field_matches_numpy_reference(systems, name):
    system = systems[name]
    reference = REFERENCES[name]
    params = system.params
    # The networks' numpy references differ: a finite-difference gradient for the Hamiltonian.
    rtol = 1e-6 if name == "hamiltonian_network" else 1e-12
    for y in sample_states(system):
        expected = np.asarray(reference(y, params), dtype=float)
        # atol: components that cancel to ~0 are judged against the field's overall size
        atol = rtol * np.abs(expected).max()
        np.testing.assert_allclose(field(system, y), expected, rtol=rtol, atol=atol)


# -- overrides ------------------------------------------------------------------------------------
def test_keyword_overrides_reach_params_y0_and_t_span():
    system = gallery.lorenz(rho=99.0, y0=[0.0, 1.0, 2.0], t_span=(0.0, 5.0))
    assert system.params["rho"] == 99.0
    np.testing.assert_array_equal(system.y0, [0.0, 1.0, 2.0])
    assert system.t_span == (0.0, 5.0)
    np.testing.assert_allclose(field(system, [1.0, 2.0, 3.0]), np_lorenz([1, 2, 3], system.params))


def test_slider_ranges_stretch_to_cover_an_override():
    info = gallery.lorenz(rho=300.0).param_info["rho"]
    assert info.lo <= 300.0 <= info.hi
    info = gallery.fitzhugh_nagumo(current=-1.0).param_info["current"]
    assert info.lo <= -1.0 and not info.log
    info = gallery.hires(k_plus=5000.0).param_info["k_plus"]
    assert info.hi >= 5000.0 and info.log


def test_van_der_pol_is_stiff_only_for_large_mu():
    assert gallery.van_der_pol().stiff is False
    assert gallery.van_der_pol(mu=1000.0).stiff is True
    stiff = gallery.van_der_pol_stiff()
    assert stiff.params["mu"] == 1000.0 and stiff.t_span == (0.0, 3000.0)


def test_network_templates_take_sizes_and_keys():
    small = gallery.neural_ode(width=4, depth=1, states=("a", "b", "c"), key=jax.random.key(3))
    assert small.states == ("a", "b", "c")
    assert [layer.weight.shape for layer in small.params.layers] == [(4, 3), (3, 4)]
    other = gallery.neural_ode(width=4, depth=1, states=("a", "b", "c"), key=jax.random.key(4))
    assert not np.allclose(small.params.layers[0].weight, other.params.layers[0].weight)
    with pytest.raises(InputError, match="`width=0` must be an integer of at least 1"):
        gallery.neural_ode(width=0)
    with pytest.raises(InputError, match="`dof=1.5`"):
        gallery.hamiltonian_network(dof=1.5)


# -- conserved quantities and closed forms --------------------------------------------------------
def test_sir_population_is_conserved(systems):
    system = systems["sir"]
    for y in sample_states(system, count=10):
        f = field(system, np.abs(y))
        assert abs(f.sum()) <= 1e-15 * np.abs(f).sum() + 1e-300


def test_robertson_mass_is_conserved(systems):
    system = systems["robertson"]
    for y in sample_states(system, count=10):
        f = field(system, y)
        assert abs(f.sum()) <= 1e-14 * np.abs(f).max()


def test_hires_enzyme_is_conserved(systems):
    system = systems["hires"]
    for y in sample_states(system, count=10):
        f = field(system, y)
        assert abs(f[6] + f[7]) <= 1e-14 * np.abs(f).max()  # E + PfrX2E is constant


def test_lotka_volterra_first_integral_is_constant_along_the_field(systems):
    system = systems["lotka_volterra"]
    p = system.params
    rng = np.random.default_rng(2)
    for x, y in rng.uniform(0.1, 5.0, size=(10, 2)):
        # V = delta x - gamma ln x + beta y - alpha ln y
        grad_v = np.array([p["delta"] - p["gamma"] / x, p["beta"] - p["alpha"] / y])
        f = field(system, [x, y])
        assert abs(grad_v @ f) <= 1e-13 * (np.abs(grad_v) @ np.abs(f))


def test_pendulum_energy_decays_at_the_friction_rate(systems):
    system = systems["damped_pendulum"]
    p = system.params
    for theta, omega in sample_states(system, count=10):
        # E = omega²/2 - (g/L) cos theta; dE/dt = -c omega²
        grad_e = np.array([p["g"] / p["length"] * math.sin(theta), omega])
        de_dt = grad_e @ field(system, [theta, omega])
        np.testing.assert_allclose(de_dt, -p["damping"] * omega**2, rtol=1e-12, atol=1e-14)


def test_harmonic_oscillator_energy_is_conserved(systems):
    system = systems["harmonic_oscillator"]
    w = system.params["omega"]
    for x, v in sample_states(system, count=10):
        assert abs(np.array([w**2 * x, v]) @ field(system, [x, v])) <= 1e-14


def test_closed_forms_match_the_textbook_formulas():
    ts = np.linspace(0.0, 6.0, 13)
    decay = gallery.exponential_decay(k=0.7, y0=[2.0])
    np.testing.assert_allclose(decay.exact(ts)[:, 0], 2.0 * np.exp(-0.7 * ts), rtol=1e-14)
    np.testing.assert_allclose(
        decay.exact(ts, y0=[3.0], params=dict(k=0.1))[:, 0], 3.0 * np.exp(-0.1 * ts), rtol=1e-14
    )
    spring = gallery.harmonic_oscillator(omega=2.0, y0=[1.0, 0.5])
    x = np.cos(2.0 * ts) + 0.25 * np.sin(2.0 * ts)
    v = -2.0 * np.sin(2.0 * ts) + 0.5 * np.cos(2.0 * ts)
    np.testing.assert_allclose(spring.exact(ts), np.stack([x, v], axis=1), atol=1e-14)


def test_closed_forms_solve_their_own_field():
    ts = jnp.linspace(0.0, 5.0, 7)
    for system in (gallery.exponential_decay(), gallery.harmonic_oscillator(omega=1.3)):
        # Row i of exact(ts) depends only on ts[i], so a JVP with ones gives every dy/dt.
        ys, dy_dt = jax.jvp(system.exact, (ts,), (jnp.ones_like(ts),))
        expected = np.stack([field(system, y) for y in ys])
        np.testing.assert_allclose(dy_dt, expected, rtol=1e-12, atol=1e-14)


def test_hodgkin_huxley_rates_are_smooth_where_the_formula_is_zero_over_zero(systems):
    system = systems["hodgkin_huxley"]
    for v in (-40.0, -55.0):  # alpha_m and alpha_n are 0/0 here
        y = np.array([v, 0.3, 0.5, 0.4])
        at = field(system, y)
        below, above = (
            np.asarray(np_hodgkin_huxley(y + [d, 0, 0, 0], system.params)) for d in (-1e-5, 1e-5)
        )
        np.testing.assert_allclose(at, (below + above) / 2, rtol=1e-8)
        jac = jax.jit(jax.jacfwd(lambda z: system(0.0, z)))(jnp.asarray(y))
        assert np.all(np.isfinite(np.asarray(jac)))


@pytest.fixture(scope="module")
def hamiltonian_parts():
    system = gallery.hamiltonian_network(dof=2, width=16, key=jax.random.key(7))
    h = system.params
    vector_field = jax.jit(lambda y: system(0.0, y))
    divergence = jax.jit(lambda y: jnp.trace(jax.jacfwd(lambda z: system(0.0, z))(y)))
    return system, h, vector_field, divergence


def test_hamiltonian_network_conserves_its_energy_and_volume(hamiltonian_parts):
    system, h, vector_field, divergence = hamiltonian_parts
    assert system.states == ("q1", "q2", "p1", "p2")
    rng = np.random.default_rng(5)
    for y in rng.normal(size=(8, 4)):
        f = np.asarray(vector_field(jnp.asarray(y)))
        grad_h = np.asarray(jax.grad(lambda z: h(z))(jnp.asarray(y)))
        assert abs(grad_h @ f) <= 1e-14 * (np.abs(grad_h) @ np.abs(f)) + 1e-300  # dH/dt = 0
        assert abs(float(divergence(jnp.asarray(y)))) <= 1e-12  # the flow keeps volume
        np.testing.assert_allclose(f, np_hamiltonian_network(y, h), rtol=1e-6, atol=1e-8)
