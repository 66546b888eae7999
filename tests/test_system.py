"""Defining systems: the class, the decorator, equations as text, slider metadata."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import odelab as ol


def test_system_holds_its_definition():
    sys = ol.System(
        lambda t, y, p: -p["k"] * y,
        states=("y",),
        params=dict(k=2.0),
        y0=[1.0],
        t_span=(0, 3),
        name="decay",
        description="first-order decay",
    )
    assert sys.states == ("y",) and sys.param_names == ("k",) and sys.t_span == (0.0, 3.0)
    assert sys.y0.dtype == np.float64
    np.testing.assert_allclose(sys(0.0, [1.0]), [-2.0])
    assert "decay" in repr(sys)


def test_decorator_is_the_same_as_the_class():
    @ol.system(states=("x", "v"), params=dict(w=2.0), y0=[1.0, 0.0], t_span=(0.0, np.pi))
    def spring(t, y, p):
        return jnp.stack([y[1], -(p["w"] ** 2) * y[0]])

    assert isinstance(spring, ol.System) and spring.name == "spring"
    sol = ol.solve(spring, rtol=1e-10, atol=1e-12, saveat=2)
    np.testing.assert_allclose(sol.ys[-1], [np.cos(2 * np.pi), 0.0], atol=1e-8)


def test_param_info_defaults_and_overrides():
    sys = ol.System(
        lambda t, y, p: p["a"] * y - p["b"] + p["c"],
        states=1,
        params=dict(a=2.0, b=-1.0, c=0.0),
        param_info=dict(a=dict(range=(0.5, 8.0), unit="1/s", description="growth")),
    )
    a, b, c = sys.param_info["a"], sys.param_info["b"], sys.param_info["c"]
    assert (a.lo, a.hi, a.log, a.unit) == (0.5, 8.0, True, "1/s")
    assert b.lo < -1.0 < b.hi and not b.log
    assert c.lo < 0.0 < c.hi


def test_partial_params_override_only_named_entries():
    sys = ol.System(lambda t, y, p: -p["k"] * y + p["u"], states=1, params=dict(k=1.0, u=0.5))
    merged = sys.merge_params(dict(u=2.0))
    assert merged["k"] == 1.0 and merged["u"] == 2.0


def test_y0_by_state_name():
    sys = ol.System(lambda t, y, p: -y, states=("a", "b"), y0=dict(b=2.0, a=1.0))
    np.testing.assert_array_equal(sys.y0, [1.0, 2.0])


def test_equinox_network_as_parameters():
    net = eqx.nn.MLP(2, 2, 8, 2, key=jax.random.PRNGKey(0))
    sys = ol.System(
        lambda t, y, p: p(y), states=("u", "v"), params=net, y0=[1.0, 0.0], t_span=(0.0, 1.0)
    )
    sol = ol.solve(sys, saveat=5)
    assert sol.ys.shape == (5, 2) and sol.ok is True
    grads = ol.gradient(lambda p: jnp.sum(ol.solve(sys, params=p, saveat=5).ys ** 2), net)
    assert isinstance(grads, eqx.nn.MLP)
    # the gradient of a weight agrees with a central difference along that weight
    w = net.layers[0].weight
    h = 1e-6
    bump = lambda d: eqx.tree_at(lambda m: m.layers[0].weight, net, w.at[0, 0].add(d))
    loss = lambda p: float(
        jnp.sum(ol.solve(sys, params=p, saveat=5, rtol=1e-10, atol=1e-12).ys ** 2)
    )
    fd = (loss(bump(h)) - loss(bump(-h))) / (2 * h)
    g = ol.gradient(
        lambda p: jnp.sum(ol.solve(sys, params=p, saveat=5).ys ** 2), net, rtol=1e-10, atol=1e-12
    )
    assert abs(float(g.layers[0].weight[0, 0]) - fd) < 1e-6 * max(1.0, abs(fd))


def test_from_equations_matches_a_hand_written_system():
    text = "x' = a*x - b*x*y\ndy/dt = -c*y + d*x*y"
    params = dict(a=1.0, b=0.5, c=2.0, d=0.5)
    eq = ol.System.from_equations(text, params=params, y0=dict(x=1.0, y=0.5), t_span=(0, 5))
    hand = ol.System(
        lambda t, z, p: jnp.stack(
            [p["a"] * z[0] - p["b"] * z[0] * z[1], -p["c"] * z[1] + p["d"] * z[0] * z[1]]
        ),
        states=("x", "y"),
        params=params,
        y0=[1.0, 0.5],
        t_span=(0, 5),
    )
    assert eq.states == ("x", "y") and eq.equations == text
    a = ol.solve(eq, rtol=1e-10, atol=1e-12, saveat=5).ys
    b = ol.solve(hand, rtol=1e-10, atol=1e-12, saveat=5).ys
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_replace_keeps_everything_else():
    sys = ol.gallery.lotka_volterra()
    other = sys.replace(y0=[3.0, 1.0])
    assert other.params == sys.params and other.states == sys.states
    np.testing.assert_array_equal(other.y0, [3.0, 1.0])


def test_gallery_has_at_least_twelve_classic_systems():
    names = ol.gallery.names()
    assert len(names) >= 12
    for name in names:
        assert isinstance(ol.gallery.GALLERY[name](), ol.System)
