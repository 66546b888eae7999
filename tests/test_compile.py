"""Values never recompile; static choices compile once per combination, then hit the cache.

Counted with JAX's own compilation events (`ol.compile_count()`), so any compilation anywhere
in the process (not only odelab's solve program) would show up.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import odelab as ol


@pytest.fixture(scope="module")
def lv():
    return ol.gallery.lotka_volterra()


def _names(system):
    return list(system.params)


def test_new_values_never_compile(lv):
    ol.solve(lv, saveat=50)  # warm up this configuration
    ol.solve(lv, saveat=50, params={_names(lv)[0]: 1.01}, rtol=1e-7, atol=1e-9,
             y0=[1.1, 0.9], t_span=(0.0, 3.0))
    before = ol.compile_count()
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = {k: float(v) * (1 + 0.1 * rng.standard_normal()) for k, v in lv.params.items()}
        ol.solve(lv, saveat=50, params=values, y0=list(rng.uniform(0.5, 2.0, 2)),
                 t_span=(0.0, float(rng.uniform(1.0, 8.0))), rtol=float(10 ** rng.uniform(-9, -5)),
                 atol=float(10 ** rng.uniform(-11, -7)))
    assert ol.compile_count() == before


def test_static_choices_compile_once_each(lv):
    for solver in ("tsit5", "dopri5"):
        ol.solve(lv, solver=solver, saveat=30)
    before = ol.compile_count()
    for _ in range(3):
        for solver in ("tsit5", "dopri5"):
            ol.solve(lv, solver=solver, saveat=30, params={_names(lv)[1]: 0.9})
    assert ol.compile_count() == before
    ol.solve(lv, solver="bosh3", saveat=30)  # a new combination compiles...
    middle = ol.compile_count()
    assert middle > before
    ol.solve(lv, solver="bosh3", saveat=30, y0=[2.0, 1.0])  # ...once
    assert ol.compile_count() == middle


def test_gradient_with_new_values_never_compiles(lv):
    def loss(p):
        return jnp.sum(ol.solve(lv, params=p, saveat=20).ys ** 2)

    ol.gradient(loss, lv.params, method="checkpoint")
    before = ol.compile_count()
    for scale in (0.9, 1.1, 1.2):
        ol.gradient(loss, {k: v * scale for k, v in lv.params.items()}, method="checkpoint",
                    rtol=1e-7 * scale)
    ol.gradient(loss, lv.params, method="checkpoint", rtol=2e-8, atol=1e-10)
    assert ol.compile_count() == before


def test_second_order_with_new_values_never_compiles(lv):
    def loss(p):
        return jnp.sum(ol.solve(lv, params=p, saveat=20).ys ** 2)

    vector = {k: 1.0 for k in lv.params}
    ol.hvp(loss, lv.params, vector)  # auto: reverse over forward sensitivities
    ol.hessian(loss, lv.params, method="checkpoint")
    before = ol.compile_count()
    for scale in (0.9, 1.1):
        moved = {k: v * scale for k, v in lv.params.items()}
        ol.hvp(loss, moved, {k: scale for k in lv.params}, rtol=1e-7 * scale)
        ol.hessian(loss, moved, method="checkpoint")
    assert ol.compile_count() == before


def test_tolerances_given_or_not_share_programs_after_warm_up(lv):
    def loss(p):
        return ol.solve(lv, params=p, saveat=2).ys[-1, 0]

    ol.gradient(loss, lv.params, method="forward", rtol=1e-6)
    before = ol.compile_count()
    for r in (1e-5, 1e-7, 1e-9):
        ol.gradient(loss, lv.params, method="forward", rtol=r)
    assert ol.compile_count() == before


def test_float_and_numpy_and_jax_scalars_share_a_program(lv):
    name = _names(lv)[0]
    ol.solve(lv, saveat=10, params={name: 1.0})
    before = ol.trace_count()  # the solve program itself; converting inputs is not counted
    ol.solve(lv, saveat=10, params={name: np.float64(1.2)})
    ol.solve(lv, saveat=10, params={name: jnp.asarray(1.3)})
    ol.solve(lv, saveat=10, params={name: 2})
    ol.solve(lv, saveat=10, params={name: jnp.asarray(1.4, dtype=jnp.float32)})
    assert ol.trace_count() == before


SCALE = 1.0  # a notebook-level global read by the lambda below


def test_a_lambda_reading_a_changed_global_is_not_served_a_stale_program(lv):
    """Same code, new global value: a new program (the cache must not bake in the old one)."""
    global SCALE

    def loss(p):
        return jnp.sum(ol.solve(lv, params=p, saveat=10).ys ** 2)

    grads = []
    for SCALE in (1.0, 3.0):  # noqa: B007  (the lambda reads the global)
        grads.append(ol.gradient(lambda p: SCALE * loss(p), lv.params,  # noqa: B023
                                 method="checkpoint"))
    for name in lv.params:
        assert float(grads[1][name]) == pytest.approx(3.0 * float(grads[0][name]), rel=1e-12)
