"""ol.solve_ensemble's layouts (shared steps vs per-member steps) against closed forms.

Exponential decay y' = -k y, y(t) = y0 exp(-k t), members differing in k and y0.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import odelab as ol
from odelab import InputError

T = 2.0
TS = np.linspace(0.0, T, 5)
KS = np.array([0.5, 1.0, 4.0, 20.0])  # the fastest member needs many more steps than the others
Y0S = np.array([[1.0], [2.0], [1e-3], [3.0]])
TIGHT = dict(rtol=1e-8, atol=1e-12)


@pytest.fixture(scope="module")
def decay():
    return ol.System(lambda t, y, p: -p["k"] * y, states=("x",), params={"k": 1.0}, y0=[1.0],
                     t_span=(0.0, T), name="decay")


def exact(ks, y0s, ts):
    return y0s * np.exp(-np.outer(ks, ts))


@pytest.mark.parametrize("layout", ["shared", "per-member"])
def test_each_member_matches_the_closed_form(decay, layout):
    sols = ol.solve_ensemble(decay, params_batch={"k": KS}, y0_batch=Y0S, saveat=TS,
                             layout=layout, solver="tsit5", **TIGHT)
    assert sols.layout == layout and sols.ys.shape == (4, 5, 1) and sols.ts.shape == (4, 5)
    want = exact(KS, Y0S, TS)
    # every member to its own tolerance, the small one (y0 1e-3) and the fast one (k 20) too
    rel = np.abs(np.asarray(sols.ys[..., 0]) - want) / (TIGHT["rtol"] * np.abs(want)
                                                        + TIGHT["atol"])
    assert np.max(rel) < 50, rel
    np.testing.assert_allclose(sols.y_reached[:, 0], want[:, -1], rtol=1e-6, atol=1e-10)
    steps = np.asarray(sols.num_steps)
    if layout == "shared":  # one step sequence, fine enough for the fastest member
        assert np.all(steps == steps[0])
    else:
        assert steps[-1] > 2 * steps[0]


def test_shared_steps_hold_the_hardest_member_to_the_tolerances(decay):
    """One step size serves the slow and the fast member: the worst member's error sets it, so
    the fast member is as accurate as when solved alone."""
    loose = dict(rtol=1e-5, atol=1e-9)
    ks = np.array([0.1] * 7 + [30.0])
    y0s = np.ones((8, 1))
    shared = ol.solve_ensemble(decay, params_batch={"k": ks}, y0_batch=y0s, saveat=TS,
                               layout="shared", solver="tsit5", **loose)
    alone = ol.solve(decay, params={"k": 30.0}, y0=[1.0], saveat=TS, solver="tsit5", **loose)
    want = exact(ks, y0s, TS)[-1]
    err_shared = np.max(np.abs(np.asarray(shared.ys[-1, :, 0]) - want) / want)
    err_alone = np.max(np.abs(np.asarray(alone.ys[:, 0]) - want) / want)
    assert err_shared <= 1.5 * err_alone + 1e-12, (err_shared, err_alone)


def test_auto_shares_steps_for_explicit_solvers_and_not_for_implicit_ones(decay):
    kw = dict(params_batch={"k": KS[:2]}, y0_batch=Y0S[:2], saveat=TS, **TIGHT)
    assert ol.solve_ensemble(decay, solver="tsit5", **kw).layout == "shared"
    implicit = ol.solve_ensemble(decay, solver="kvaerno5", **kw)
    assert implicit.layout == "per-member"
    np.testing.assert_allclose(implicit.ys[..., 0], exact(KS[:2], Y0S[:2], TS), rtol=1e-6)


@pytest.mark.parametrize("layout", ["shared", "per-member"])
def test_gradient_of_shared_parameters_through_the_batch(decay, layout):
    """d/dk Σ_i y0_i exp(-k T) = -T Σ_i y0_i exp(-k T): the form a user writes for a batch."""

    def loss(k):
        sols = ol.solve_ensemble(decay, y0_batch=Y0S, params={"k": k}, saveat=[0.0, T],
                                 layout=layout, solver="tsit5", rtol=1e-10, atol=1e-12)
        return jnp.sum(sols.ys[:, -1, 0])

    k = 0.7
    want = -T * np.sum(Y0S) * np.exp(-k * T)
    np.testing.assert_allclose(ol.gradient(loss, k), want, rtol=1e-7)
    np.testing.assert_allclose(jax.jit(loss)(k), np.sum(Y0S) * np.exp(-k * T), rtol=1e-8)


def test_gradient_of_varying_parameters_through_the_batch(decay):
    """d/dk_i of Σ_i y_i(T) with y0_i = 1: -T exp(-k_i T), per member."""

    def loss(ks):
        sols = ol.solve_ensemble(decay, params_batch={"k": ks}, y0_batch=np.ones((3, 1)),
                                 saveat=[0.0, T], solver="tsit5", rtol=1e-10, atol=1e-12)
        return jnp.sum(sols.ys[:, -1, 0])

    ks = jnp.array([0.3, 1.0, 2.0])
    np.testing.assert_allclose(ol.gradient(loss, ks), -T * np.exp(-np.asarray(ks) * T),
                               rtol=1e-7)


def test_layout_and_params_mistakes_name_the_fix(decay):
    with pytest.raises(InputError, match=r"`layout='stacked'` is not known; give one of auto"):
        ol.solve_ensemble(decay, y0_batch=Y0S, layout="stacked")
    with pytest.raises(InputError, match=r"`params` names 'kk'.*Did you mean 'k'"):
        ol.solve_ensemble(decay, y0_batch=Y0S, params={"kk": 1.0})


@pytest.mark.parametrize("layout", ["shared", "per-member"])
def test_every_gradient_method_through_the_batch_one_after_another(decay, layout):
    """Each method in turn on the same loss (a program of one must not leak into the next)."""

    def loss(k):
        sols = ol.solve_ensemble(decay, y0_batch=Y0S[:2], params={"k": k}, saveat=[0.0, T],
                                 layout=layout, solver="tsit5", rtol=1e-10, atol=1e-12)
        return jnp.sum(sols.ys[:, -1, 0])

    k = 0.7
    want = -T * np.sum(Y0S[:2]) * np.exp(-k * T)
    for method in ("checkpoint", "forward", "forward-sensitivity", "backsolve", "interpolating",
                   "direct", "finite-difference"):
        got = ol.gradient(loss, k, method=method)
        np.testing.assert_allclose(got, want, rtol=1e-4 if method == "finite-difference"
                                   else 1e-7, err_msg=method)


def test_session_tolerances_reach_the_batch(decay):
    """A changed session default is used, not the one the chunk program first saw."""
    from odelab.solve import set_session_defaults

    kw = dict(params_batch={"k": KS[:2]}, y0_batch=Y0S[:2], saveat=TS, solver="tsit5")
    try:
        set_session_defaults(rtol=1e-3, atol=1e-6)
        loose = np.asarray(ol.solve_ensemble(decay, **kw).ys)
        set_session_defaults(rtol=1e-10, atol=1e-13)
        tight = np.asarray(ol.solve_ensemble(decay, **kw).ys)
    finally:
        set_session_defaults()
    want = exact(KS[:2], Y0S[:2], TS)
    assert np.max(np.abs(tight[..., 0] - want)) < 1e-8
    assert np.max(np.abs(loose[..., 0] - want)) > 10 * np.max(np.abs(tight[..., 0] - want))
