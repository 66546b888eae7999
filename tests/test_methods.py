"""Gradient methods: the composability matrix (every method × every derivative request) and
accuracy against references independent of odelab and diffrax.

Reference problem: a damped rotation y' = [[-a, b], [-b, -a]] y, whose solution is known in closed
form, y(t) = e^{-a t} R(b t) y0. The reference derivatives are JAX autodiff of that closed form
(elementary functions only), cross-checked once against scipy's expm Fréchet derivative.
"""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import odelab as ol
from odelab import MethodError, OdelabError
from odelab.methods import METHODS

RTOL, ATOL = 1e-10, 1e-12
TS = np.linspace(0.0, 2.0, 5)
Y0 = np.array([1.0, 0.5])
DATA = np.array([0.9, 0.6, 0.3, 0.1, 0.0])
P0 = {"a": 0.7, "b": 1.3}
V = {"a": 0.3, "b": -0.8}
ETA = 0.05  # inner learning rate of the bilevel objective


def rotation(t, y, p):
    a, b = p["a"], p["b"]
    return jnp.stack([-a * y[0] + b * y[1], -b * y[0] - a * y[1]])


SYSTEM = ol.System(rotation, ("u", "v"), params=P0, y0=Y0, t_span=(0.0, 2.0), name="rotation")
SOLVER = "tsit5"  # named, so no solver="auto" probe runs inside the transforms


# --- the closed form -----------------------------------------------------------------------------
def exact_ys(p):
    a, b = p["a"], p["b"]
    t = jnp.asarray(TS)
    c, s, e = jnp.cos(b * t), jnp.sin(b * t), jnp.exp(-a * t)
    return jnp.stack([e * (c * Y0[0] + s * Y0[1]), e * (-s * Y0[0] + c * Y0[1])], axis=1)


def make_loss(ys_of):
    return lambda p: jnp.sum((ys_of(p)[:, 0] - DATA) ** 2) + 0.5 * jnp.sum(ys_of(p)[:, 1] ** 2)


def make_bilevel(ys_of, inner_gradient):
    """Outer loss after two steps of gradient descent on an inner loss, started from p."""
    inner = lambda q: jnp.sum((ys_of(q)[:, 0] - DATA) ** 2)  # noqa: E731

    def outer(p):
        q = p
        for _ in range(2):
            g = inner_gradient(inner, q)
            q = {k: q[k] - ETA * g[k] for k in q}
        return jnp.sum(ys_of(q)[:, 1] ** 2)

    return outer


def solved_ys(p):
    return ol.solve(SYSTEM, params=p, saveat=TS, rtol=RTOL, atol=ATOL, solver=SOLVER).ys


exact_loss = make_loss(exact_ys)
solve_loss = make_loss(solved_ys)
solve_bilevel = make_bilevel(solved_ys, lambda f, q: ol.gradient(f, q))
exact_bilevel = make_bilevel(exact_ys, lambda f, q: jax.grad(f)(q))

PF = {k: jnp.asarray(v) for k, v in P0.items()}
BATCH = jnp.array([0.5, 0.7, 0.9])


def reference(request):
    if request == "gradient":
        return jax.grad(exact_loss)(PF)
    if request == "jacobian":
        return jax.jacrev(lambda p: exact_ys(p)[:, 0])(PF)
    if request == "jvp":
        return jax.jvp(exact_loss, (PF,), (V,))[1]
    if request == "hvp":
        return jax.jvp(jax.grad(exact_loss), (PF,), (V,))[1]
    if request == "hessian":
        flat, unravel = jax.flatten_util.ravel_pytree(PF)
        return jax.hessian(lambda x: exact_loss(unravel(x)))(flat)
    if request == "vmap-gradient":
        return jax.vmap(lambda a: jax.grad(exact_loss)({"a": a, "b": PF["b"]}))(BATCH)
    if request == "nested-gradient":
        return jax.grad(exact_bilevel)(PF)
    raise ValueError(request)


def compute(request, method):
    if request == "gradient":
        return ol.gradient(solve_loss, P0, method)
    if request == "jacobian":
        return ol.jacobian(lambda p: solved_ys(p)[:, 0], P0, method)
    if request == "jvp":
        return ol.jvp(solve_loss, P0, V, method)[1]
    if request == "hvp":
        return ol.hvp(solve_loss, P0, V, method)
    if request == "hessian":
        return ol.hessian(solve_loss, P0, method)
    if request == "vmap-gradient":
        return jax.vmap(lambda a: ol.gradient(solve_loss, {"a": a, "b": PF["b"]}, method))(BATCH)
    if request == "nested-gradient":
        return ol.gradient(solve_bilevel, P0, method)
    raise ValueError(request)


def flat(tree):
    if isinstance(tree, dict):
        return np.concatenate([np.ravel(np.asarray(tree[k])) for k in sorted(tree)])
    return np.ravel(np.asarray(tree))


def tolerance(method):
    if method == "finite-difference":
        return 1e-4
    return 1e-6


REQUESTS = ["gradient", "jacobian", "jvp", "hvp", "hessian", "vmap-gradient", "nested-gradient"]
# delay-adjoint serves DelaySystems only (tests/test_delay.py); it registers itself when the
# delay module is imported, so leave it out here whatever was imported first
ALL_METHODS = sorted(m for m in METHODS if m != "delay-adjoint") + ["auto"]
# value cells that run by default; the other value cells compile a program each (slow marker).
# Refusals raise before tracing, so all of them run by default.
FAST_CELLS = {("interpolating", "gradient"), ("forward-sensitivity", "jvp"), ("auto", "hvp")}


def _declared(method, request):
    return method == "auto" or METHODS[method].capabilities.supports(request)


MATRIX = [
    pytest.param(m, r, marks=() if (m, r) in FAST_CELLS or not _declared(m, r)
                 else pytest.mark.slow, id=f"{m}-{r}")
    for m in ALL_METHODS
    for r in REQUESTS
]


def test_reference_agrees_with_expm_frechet():
    # the closed form's derivative equals scipy's Fréchet derivative of expm(A t) y0
    a, b = P0["a"], P0["b"]
    dA_da = np.array([[-1.0, 0.0], [0.0, -1.0]])
    t = TS[-1]
    A = np.array([[-a, b], [-b, -a]])
    _, frechet = scipy.linalg.expm_frechet(A * t, dA_da * t)
    want = frechet @ Y0
    got = jax.jacfwd(lambda aa: exact_ys({"a": aa, "b": b})[-1])(a)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12)


@pytest.mark.parametrize(("method", "request_name"), MATRIX)
def test_composability(method, request_name):
    """Each cell: a value agreeing with the reference, or an OdelabError naming the way out."""
    if not _declared(method, request_name):
        with pytest.raises(MethodError, match="method="):
            compute(request_name, method)
        return
    try:
        got = compute(request_name, method)
    except OdelabError as err:  # pragma: no cover - a declared capability that fails is a bug
        pytest.fail(f"{method} declares {request_name} but raised: {err}")
    want = reference(request_name)
    np.testing.assert_allclose(flat(got), flat(want), rtol=tolerance(method),
                               atol=tolerance(method) * np.max(np.abs(flat(want))))


# --- the primitive under the user's own JAX transforms --------------------------------------------
@pytest.fixture(scope="module")
def raw_loss():
    def loss(p, method):
        ys = ol.solve(SYSTEM, params=p, saveat=TS, rtol=RTOL, atol=ATOL, method=method,
                      solver=SOLVER).ys
        return jnp.sum((ys[:, 0] - DATA) ** 2) + 0.5 * jnp.sum(ys[:, 1] ** 2)

    return loss


@pytest.mark.slow
@pytest.mark.parametrize("method", ["interpolating", "forward-sensitivity"])
def test_user_transforms_compose(raw_loss, method):
    f = lambda p: raw_loss(p, method)  # noqa: E731
    x = jnp.array([P0["a"], P0["b"]])
    fx = lambda x: f({"a": x[0], "b": x[1]})  # noqa: E731
    ex = lambda x: exact_loss({"a": x[0], "b": x[1]})  # noqa: E731
    np.testing.assert_allclose(jax.grad(fx)(x), jax.grad(ex)(x), rtol=1e-7)
    np.testing.assert_allclose(jax.jacfwd(jax.jacfwd(fx))(x), jax.hessian(ex)(x), rtol=1e-6)
    np.testing.assert_allclose(jax.hessian(fx)(x), jax.hessian(ex)(x), rtol=1e-6)
    xs = jnp.stack([x, 1.1 * x])
    hv = jax.vmap(lambda z: jax.jvp(jax.grad(fx), (z,), (jnp.array([1.0, 2.0]),))[1])(xs)
    hv_ref = jax.vmap(lambda z: jax.jvp(jax.grad(ex), (z,), (jnp.array([1.0, 2.0]),))[1])(xs)
    np.testing.assert_allclose(hv, hv_ref, rtol=1e-6)


def test_y0_derivative_interpolating(raw_loss):
    def f(y0):
        ys = ol.solve(SYSTEM, y0=y0, saveat=TS, rtol=RTOL, atol=ATOL, method="interpolating",
                      solver=SOLVER).ys
        return jnp.sum(ys**2)

    def ref(y0):
        a, b = P0["a"], P0["b"]
        t = jnp.asarray(TS)
        return jnp.sum(jnp.exp(-2 * a * t)) * jnp.sum(y0**2) + 0 * b

    y0 = jnp.asarray(Y0)
    np.testing.assert_allclose(jax.grad(f)(y0), jax.grad(ref)(y0), rtol=1e-7)


@pytest.mark.parametrize("solver, steps", [
    ("rodas5", {}),  # a stiff (Rosenbrock) solver runs the adjoint too
    ("kvaerno5", {}),  # implicit: Newton iterations inside every adjoint step
    ("tsit5", {"dt": 1e-3}),  # fixed steps: the adjoint runs interval by interval
])
def test_interpolating_gradient_with_stiff_and_fixed_step_solvers(solver, steps):
    def f(p):
        tol = {} if steps else {"rtol": RTOL, "atol": ATOL}
        ys = ol.solve(SYSTEM, params=p, saveat=TS, method="interpolating", solver=solver,
                      **tol, **steps).ys
        return make_loss(lambda _: ys)(p)

    g = ol.gradient(f, P0, "interpolating")
    ref = jax.grad(make_loss(exact_ys))(P0)
    for k in P0:
        np.testing.assert_allclose(float(g[k]), float(ref[k]), rtol=1e-7)


def test_time_derivative_refused():
    def f(t1):
        return ol.solve(SYSTEM, t_span=(0.0, t1), saveat=3, method="interpolating",
                        solver=SOLVER).ys[-1, 0]

    with pytest.raises(MethodError, match="direct"):
        jax.jvp(f, (2.0,), (1.0,))


def test_auto_choices():
    from odelab.solve import choose_method
    from odelab.solve import choose_route as _auto_route

    assert choose_method(None).name == "checkpoint"
    assert choose_method(_auto_route("gradient", 2, False)).name == "forward"
    # stiff (implicit) solver: forward sensitivities, whose step control covers the tangents
    assert choose_method(_auto_route("gradient", 2, False), stiff=True).name == \
        "forward-sensitivity"
    assert choose_method(_auto_route("gradient", 50, False), stiff=True).name == "checkpoint"
    assert choose_method(_auto_route("gradient", 50, False)).name == "checkpoint"
    # second order: reverse over forward sensitivities through checkpoints; dense Hessians of
    # few parameters forward over forward (forward sensitivities with a stiff solver)
    for request, n in (("hvp", 50), ("hessian", 50)):
        chosen = choose_method(_auto_route(request, n, False))
        assert chosen.name == "checkpoint" and chosen.for_derivative(
            _auto_route(request, n, False)).tangent_rule
    assert choose_method(_auto_route("hessian", 2, False)).name == "forward"
    assert choose_method(_auto_route("hvp", 2, False)).name == "forward"
    assert choose_method(_auto_route("hessian", 2, False), stiff=True).name == \
        "forward-sensitivity"
    assert choose_method(_auto_route("gradient", 2, True)).name == "direct"
    assert "backsolve" not in {choose_method(_auto_route(r, n, False)).name
                               for r in ("gradient", "jvp", "hvp") for n in (1, 100)}


# --- accuracy on a stiff problem: forward sensitivities are error-controlled ----------------------
@pytest.mark.slow
def test_stiff_forward_sensitivity_accuracy():
    """Robertson kinetics: forward-sensitivity gradients against scipy Radau + differences."""
    from scipy.integrate import solve_ivp

    sysr = ol.gallery.robertson()
    p = dict(sysr.params)
    t1 = 10.0
    key = sorted(p)[0]

    def final(pp, method):
        sol = ol.solve(sysr, params=pp, t_span=(0.0, t1), saveat=2, rtol=1e-8, atol=1e-12,
                       method=method, solver="kvaerno5")
        return sol.ys[-1, 0]

    g = ol.gradient(lambda pp: final(pp, None), p, "forward-sensitivity")[key]

    def scipy_final(v):
        q = dict(p, **{key: v})
        f = lambda t, y: np.asarray(sysr.f(t, jnp.asarray(y), q))  # noqa: E731
        return solve_ivp(f, (0.0, t1), np.asarray(sysr.y0), method="Radau", rtol=1e-12,
                         atol=1e-16).y[0, -1]

    h = 1e-4 * p[key]
    ref = (scipy_final(p[key] + h) - scipy_final(p[key] - h)) / (2 * h)
    np.testing.assert_allclose(float(g), ref, rtol=1e-4)
    # "auto" with a stiff solver and few parameters takes the same route
    g_auto = ol.gradient(lambda pp: final(pp, None), p)[key]
    np.testing.assert_allclose(float(g_auto), ref, rtol=1e-4)


# --- second order through a stiff solve: reverse over forward sensitivities ----------------------
def _stiff_exact(p, y0, ts):
    """y1' = -a y1 + y2, y2' = -b y2 in closed form (a = 500 makes it stiff)."""
    a, b = p["a"], p["b"]
    y2 = y0[1] * jnp.exp(-b * ts)
    y1 = y0[0] * jnp.exp(-a * ts) + y0[1] * (jnp.exp(-b * ts) - jnp.exp(-a * ts)) / (a - b)
    return jnp.stack([y1, y2], axis=1)


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["rodas5", "radau5", "kvaerno5"])
def test_stiff_hessian_by_reverse_over_forward(solver):
    ts = jnp.linspace(0.0, 2.0, 5)
    y0 = jnp.array([1.0, 2.0])
    p0 = {"a": 500.0, "b": 0.7}
    system = ol.System(lambda t, y, p: jnp.stack([-p["a"] * y[0] + y[1], -p["b"] * y[1]]),
                       ("y1", "y2"), params=p0, y0=y0, t_span=(0.0, 2.0), name="stiff_pair")

    def loss_of(ys):
        return jnp.sum(ys[:, 0] ** 2) + jnp.sum(ys[:, 0] * ys[:, 1])

    def loss(p):
        return loss_of(ol.solve(system, params=p, saveat=ts, solver=solver, rtol=1e-10,
                                atol=1e-12).ys)

    exact = lambda x: loss_of(_stiff_exact({"a": x[0], "b": x[1]}, y0, ts))  # noqa: E731
    x0 = jnp.array([p0["a"], p0["b"]])
    hess = ol.hessian(loss, p0, method="checkpoint")
    np.testing.assert_allclose(hess, jax.hessian(exact)(x0), rtol=1e-6,
                               atol=1e-6 * np.max(np.abs(jax.hessian(exact)(x0))))
    # auto with two parameters: forward over forward sensitivities (their steps controlled too)
    hv = ol.hvp(loss, p0, {"a": 0.0, "b": 1.0})
    want = jax.jvp(jax.grad(exact), (x0,), (jnp.array([0.0, 1.0]),))[1]
    np.testing.assert_allclose([float(hv["a"]), float(hv["b"])], want, rtol=1e-6,
                               atol=1e-6 * float(np.max(np.abs(want))))


def test_method_classes_hang_off_the_table_function():
    table = ol.methods()
    assert "checkpoint" in table.names() and table["checkpoint"].second_order
    assert ol.methods.Checkpoint(32).checkpoints == 32
    assert ol.methods.FiniteDifference(step=1e-3).name == "finite-difference"


@pytest.mark.parametrize("checkpoints, fixed", [
    (3, False), (1000, False),  # 1000 > steps: empty segments
    (3, True),  # fixed steps: the adjoint runs save interval by save interval inside a segment
])
def test_checkpointed_interpolating_gradient_and_hvp(checkpoints, fixed):
    method = ol.methods.Interpolating(checkpoints=checkpoints)
    steps = {"dt": 1e-3} if fixed else {"rtol": RTOL, "atol": ATOL}
    loss = make_loss(lambda p: ol.solve(SYSTEM, params=p, saveat=TS, solver=SOLVER,
                                        **steps).ys)
    g = ol.gradient(loss, P0, method)
    hv = ol.hvp(loss, P0, V, method)
    np.testing.assert_allclose(flat(g), flat(reference("gradient")), rtol=1e-7)
    np.testing.assert_allclose(flat(hv), flat(reference("hvp")), rtol=1e-6)


def test_checkpointed_interpolating_holds_one_segment_of_interpolant():
    def loss(p):
        ys = ol.solve(SYSTEM, params=p, saveat=TS, rtol=RTOL, atol=ATOL, solver=SOLVER,
                      max_steps=20_000).ys
        return jnp.sum(ys**2)

    def temp_bytes(method):
        fn = jax.jit(lambda p: ol.gradient(loss, p, method))
        return fn.lower(PF).compile().memory_analysis().temp_size_in_bytes

    whole, segmented = temp_bytes("interpolating"), temp_bytes(
        ol.methods.Interpolating(checkpoints=64))
    assert segmented < whole / 4, (segmented, whole)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_interpolating_checkpoints_must_be_a_positive_integer(bad):
    with pytest.raises(OdelabError, match="checkpoints must be a positive whole number"):
        ol.methods.Interpolating(checkpoints=bad)


# --- a batch of initial states vmapped inside the objective (parameters shared) -------------------
Y0S = np.array([[1.0, 0.5], [0.2, -0.4], [-0.7, 0.3]])


def _batch_loss(ys_of_y0):
    def loss(p):
        ys = jax.vmap(lambda y0: ys_of_y0(p, y0))(jnp.asarray(Y0S))  # (batch, time, state)
        return jnp.mean((ys[:, :, 0] - DATA) ** 2) + 0.5 * jnp.mean(ys[:, :, 1] ** 2)

    return loss


def _exact_ys_from(p, y0):
    a, b = p["a"], p["b"]
    t = jnp.asarray(TS)
    c, s, e = jnp.cos(b * t), jnp.sin(b * t), jnp.exp(-a * t)
    return jnp.stack([e * (c * y0[0] + s * y0[1]), e * (-s * y0[0] + c * y0[1])], axis=1)


@pytest.mark.slow
@pytest.mark.parametrize("method", ALL_METHODS)
def test_vmap_over_initial_states_inside_the_objective(method):
    """jax.vmap over y0 inside the loss, parameters unbatched: the parameters' cotangent is a sum
    over the batch (a case JAX's batching of custom transposes gets wrong unless handled)."""
    loss = _batch_loss(lambda p, y0: ol.solve(SYSTEM, y0=y0, params=p, saveat=TS, rtol=RTOL,
                                              atol=ATOL, solver=SOLVER).ys)
    exact = _batch_loss(_exact_ys_from)
    tol = tolerance(method)
    np.testing.assert_allclose(flat(ol.gradient(loss, P0, method)), flat(jax.grad(exact)(PF)),
                               rtol=tol)
    if method in ("checkpoint", "interpolating"):  # the two second-order rules of odelab's own
        want = flat(jax.jvp(jax.grad(exact), (PF,), (V,))[1])
        np.testing.assert_allclose(flat(ol.hvp(loss, P0, V, method)), want, rtol=tol,
                                   atol=tol * np.max(np.abs(want)))
