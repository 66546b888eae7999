"""Issue 19 (hardening): each reproduction from probing odelab is a test here.

A user's mistake gets an `OdelabError` subclass whose message names the argument; a problem the
computation cannot mean anything for (a vector field that is NaN at y0) is said as such. The
references for the results that must stay right are closed forms: y' = -k y, y(0) = 1 has
y(1) = exp(-k) and ∂y(1)/∂k = -exp(-k).
"""

import math
import re

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import FakeComm

import odelab as ol
from odelab import InputError, SolveError
from odelab.methods import Checkpoint, FiniteDifference

NAN, INF = float("nan"), float("inf")


def decay_field(t, y, p):
    return -p["k"] * y


@pytest.fixture(scope="module")
def decay():
    return ol.System(decay_field, states=("x",), params={"k": 1.0}, y0=[1.0], t_span=(0.0, 1.0),
                     name="decay")


def end_value(system):
    return lambda p: ol.solve(system, params=p, saveat=2).ys[-1, 0]


def end_state(system):
    return lambda p: ol.solve(system, params=p, saveat=2).ys[-1]


@pytest.fixture(scope="module")
def dense(decay):
    return ol.solve(decay, saveat="dense")


# --------------------------------------------------------------------------------------------
# item 4: NaN or inf in any float argument is refused at the boundary, naming the argument
# --------------------------------------------------------------------------------------------
def _non_finite_cases(decay, dense):
    p = {"k": 1.0}
    loss = end_value(decay)
    from odelab.solve import set_session_defaults

    return [
        ("saveat", lambda: ol.solve(decay, saveat=[0.0, NAN, 1.0])),
        ("t_span", lambda: ol.solve(decay, t_span=(0.0, NAN))),
        ("t_span", lambda: ol.solve(decay, t_span=(0.0, INF))),
        ("rtol", lambda: ol.solve(decay, rtol=NAN)),
        ("atol", lambda: ol.solve(decay, atol=INF)),
        ("dt", lambda: ol.solve(decay, solver="euler", dt=NAN)),
        ("params['k']", lambda: ol.solve(decay, params={"k": NAN})),
        ("params['k']", lambda: ol.solve(decay, params={"k": np.float32(INF)})),
        ("y0", lambda: ol.solve(decay, y0=[NAN])),
        ("params['k']", lambda: ol.gradient(loss, {"k": NAN})),
        ("rtol", lambda: ol.gradient(loss, p, rtol=NAN)),
        ("tangent['k']", lambda: ol.jvp(loss, p, {"k": NAN})),
        ("vector['k']", lambda: ol.hvp(loss, p, {"k": INF})),
        ("accuracy", lambda: ol.check_gradient(loss, p, accuracy=NAN)),
        ("tol", lambda: ol.hessian_spectrum(loss, p, tol=NAN)),
        ("sigma", lambda: ol.hessian_spectrum(loss, p, sigma=INF, density=True)),
        ("params_batch['k']", lambda: ol.solve_ensemble(decay, {"k": np.array([1.0, NAN])})),
        ("y0_batch", lambda: ol.solve_ensemble(decay, y0_batch=np.array([[1.0], [NAN]]))),
        ("FiniteDifference(step=nan)", lambda: FiniteDifference(step=NAN)),
        ("`t`", lambda: dense.evaluate(NAN)),
        ("rtol", lambda: set_session_defaults(rtol=NAN)),
        ("delays", lambda: ol.DelaySystem(lambda t, y, yd, p: -yd[0], delays=(NAN,), history=1.0,
                                          states=("x",), t_span=(0.0, 1.0))),
        ("history", lambda: ol.DelaySystem(lambda t, y, yd, p: -yd[0], delays=(0.5,), history=NAN,
                                           states=("x",), t_span=(0.0, 1.0))),
    ]


def test_non_finite_arguments_are_refused(decay, dense):
    for argument, call in _non_finite_cases(decay, dense):
        with pytest.raises(InputError) as info:
            call()
        message = str(info.value)
        assert argument in message, (argument, message)
        assert "finite" in message, (argument, message)


def test_a_nan_save_time_no_longer_gives_inf_times(decay):
    # the reproduction: a NaN among saveat times came back as inf times with sol.ok == True
    with pytest.raises(InputError, match=r"`saveat` contains a non-finite value \(nan\) at index"):
        ol.solve(decay, saveat=np.array([0.0, 0.5, NAN]))
    sol = ol.solve(decay, saveat=np.array([0.0, 0.5, 1.0]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(sol["x"]), np.exp(-np.array([0.0, 0.5, 1.0])),
                               rtol=1e-8)


# --------------------------------------------------------------------------------------------
# item 5: plans that cannot fit are refused with the numbers, before anything is compiled
# --------------------------------------------------------------------------------------------
def test_a_hundred_million_save_points_are_refused_before_compiling(decay, monkeypatch):
    monkeypatch.setenv("ODELAB_MEMORY_LIMIT", "1GB")
    before = ol.compile_count()
    with pytest.raises(InputError, match=r"`saveat=100000000` asks for 100000000 save points.*"
                                         r"ODELAB_MEMORY_LIMIT"):
        ol.solve(decay, saveat=10**8)
    assert ol.compile_count() == before


def test_a_tiny_delay_is_refused_with_the_numbers(monkeypatch):
    monkeypatch.setenv("ODELAB_MEMORY_LIMIT", "2GB")
    dde = ol.DelaySystem(lambda t, y, yd, p: -yd[0], delays=(1e-6,), history=1.0, states=("x",),
                         t_span=(0.0, 1.0))
    with pytest.raises(InputError, match=r"smallest delay, 1e-06.*1000002 intervals.*GB"):
        ol.solve(dde)


def test_a_bad_memory_limit_setting_is_named(decay, monkeypatch):
    monkeypatch.setenv("ODELAB_MEMORY_LIMIT", "lots")
    with pytest.raises(InputError, match=r"ODELAB_MEMORY_LIMIT='lots' is not a size"):
        ol.solve(decay, saveat=3)


# --------------------------------------------------------------------------------------------
# item 6: a vector field that is not finite at y0 is said to be so, with the state and time
# --------------------------------------------------------------------------------------------
def _sqrt_field(t, y, p):
    return jnp.sqrt(-p["a"] * y)


@pytest.fixture(scope="module")
def sqrt_system():
    return ol.System(_sqrt_field, states=("x",), params={"a": 1.0}, y0=[1.0], t_span=(0.0, 1.0),
                     name="root")


@pytest.mark.parametrize("solver, dt", [("tsit5", None), ("kvaerno5", None), ("euler", 0.1)])
def test_a_field_not_finite_at_y0_is_not_called_max_steps(sqrt_system, solver, dt):
    with pytest.raises(SolveError) as info:
        ol.solve(sqrt_system, solver=solver, dt=dt)
    message = str(info.value)
    assert "not finite right at the start at t=0" in message, message
    assert "x=1" in message and "component 0 of dy/dt is nan" in message, message
    assert "max_steps" not in message and "blew up" not in message, message


def test_log_of_zero_and_an_overflowing_power_are_named():
    log0 = ol.System(lambda t, y, p: jnp.log(0.0 * y), states=("u",), y0=[2.0], t_span=(0.0, 1.0))
    power = ol.System(lambda t, y, p: (1e200 * y) ** 3, states=("u",), y0=[1.0],
                      t_span=(0.0, 1.0))
    for system, value in ((log0, "-inf"), (power, "inf")):
        sol = ol.solve(system, throw=False)
        assert not sol.ok
        assert f"is {value}." in sol.message and "at the state u=" in sol.message, sol.message
        assert "max_steps" not in sol.message


@pytest.mark.parametrize("method", ["checkpoint", "backsolve", "finite-difference"])
def test_a_derivative_through_a_field_not_finite_at_y0_says_so(sqrt_system, method):
    loss = lambda p: ol.solve(sqrt_system, params=p, saveat=2).ys[-1, 0]
    with pytest.raises(SolveError, match=r"starts where the vector field is not finite") as info:
        ol.gradient(loss, sqrt_system.params, method=method)
    assert "max_steps" not in str(info.value)


def test_a_delay_field_not_finite_at_the_start_is_named():
    dde = ol.DelaySystem(lambda t, y, yd, p: jnp.sqrt(-y) + yd[0], delays=(0.5,), history=1.0,
                         states=("x",), t_span=(0.0, 2.0), name="delayed_root")
    with pytest.raises(SolveError, match=r"not finite right at the start at t=0 .*x=1"):
        ol.solve(dde)


def test_a_finite_field_still_solves_and_differentiates_exactly(decay):
    # the start check must not misfire: the closed forms y(1) = exp(-k), dy(1)/dk = -exp(-k)
    sol = ol.solve(decay, params={"k": 0.7}, rtol=1e-10, atol=1e-12)
    assert sol.ok and abs(float(sol["x"][-1]) - math.exp(-0.7)) < 1e-8
    g = ol.gradient(end_value(decay), {"k": 0.7}, rtol=1e-10, atol=1e-12)
    assert abs(float(g["k"]) + math.exp(-0.7)) < 1e-8


# --------------------------------------------------------------------------------------------
# item 7: impossible settings refused when they are given, naming the argument
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, phrase", [
    (dict(step=0), r"`FiniteDifference\(step=0\)` must be positive"),
    (dict(step=-1e-3), r"`FiniteDifference\(step=-0.001\)` must be positive"),
    (dict(step="small"), r"`FiniteDifference\(step='small'\)`"),
    (dict(richardson="yes"), r"`FiniteDifference\(richardson='yes'\)` must be True or False"),
])
def test_finite_difference_settings_are_checked_at_construction(kwargs, phrase):
    with pytest.raises(InputError, match=phrase):
        FiniteDifference(**kwargs)


@pytest.mark.parametrize("checkpoints", [0, -3, 2.5, True, "many"])
def test_checkpoint_count_is_checked_at_construction(checkpoints):
    with pytest.raises(InputError, match=r"`Checkpoint\(checkpoints=.*positive whole number"):
        Checkpoint(checkpoints=checkpoints)


def test_valid_method_settings_still_give_the_closed_form_gradient(decay):
    loss = end_value(decay)
    for method in (FiniteDifference(step=1e-3), Checkpoint(checkpoints=np.int64(8))):
        g = ol.gradient(loss, {"k": 1.0}, method=method, rtol=1e-10, atol=1e-12)
        assert abs(float(g["k"]) + math.exp(-1.0)) < 1e-7, method


@pytest.mark.parametrize("request_", ["hessian", "hvp", "gradient"])
def test_second_derivatives_of_a_vector_valued_fun_are_refused(decay, request_):
    fun, p = end_state(decay), {"k": 1.0}
    call = {"hessian": lambda: ol.hessian(fun, p), "hvp": lambda: ol.hvp(fun, p, p),
            "gradient": lambda: ol.gradient(fun, p)}[request_]
    with pytest.raises(InputError, match=rf"`fun` returned shape \(1,\); a {request_} needs a "
                                         "scalar"):
        call()


def test_has_aux_on_a_scalar_fun_names_the_argument(decay):
    with pytest.raises(InputError, match=r"`has_aux=True`: .* returned an array of shape \(\)"):
        ol.gradient(end_value(decay), {"k": 1.0}, has_aux=True)


def test_a_solver_typo_of_a_derivative_call_is_not_ignored(decay):
    pinned = lambda p: ol.solve(decay, params=p, saveat=2, solver="tsit5").ys[-1, 0]
    for call in (lambda: ol.gradient(pinned, {"k": 1.0}, solver="tsti5"),
                 lambda: ol.hessian(pinned, {"k": 1.0}, solver="rodas"),
                 lambda: ol.jvp(pinned, {"k": 1.0}, {"k": 1.0}, solver=3)):
        with pytest.raises(InputError, match=r"`solver=.*` is not known"):
            call()


@pytest.mark.parametrize("value", ["one", None, [1.0, 2.0], True])
def test_from_equations_parameter_values_are_checked(value):
    with pytest.raises(InputError, match=r"params\['a'\]"):
        ol.System.from_equations("x' = -a*x", params={"a": value}, y0={"x": 1.0})


def test_a_system_parameter_given_as_text_is_named():
    with pytest.raises(InputError, match=r"`params\['a'\]='one'` is not a number"):
        ol.System(lambda t, y, p: -y, states=("x",), params={"a": "one"}, y0=[1.0])


@pytest.mark.parametrize("settings, phrase", [
    (dict(solver="tsti5"), r"`solver='tsti5'` is not known. Did you mean 'tsit5'"),
    (dict(y0=[1.0, 2.0]), r"`y0` has shape \(2,\); 'decay' has 1 states"),
    (dict(foo=1), r"`foo` is not a setting of ol.explore"),
    (dict(rtl=1e-6), r"`rtl` is not a setting of ol.explore. Did you mean 'rtol'"),
    (dict(rtol=NAN), r"`rtol=nan` is not finite"),
    (dict(values={"kk": 2.0}), r"`values='kk'` is not known. Did you mean 'k'"),
    (dict(method="checkpointing"), r"`method='checkpointing'` is not a gradient method"),
    (dict(n_save=1), r"`n_save=1`"),
])
def test_explore_mistakes_are_odelab_errors(decay, settings, phrase):
    with pytest.raises(InputError, match=phrase):
        ol.explore(decay, **settings)


# --------------------------------------------------------------------------------------------
# item 8: the comm checks types after the schema, and settings like ol.solve's arguments
# --------------------------------------------------------------------------------------------
@pytest.fixture
def lab_bridge():
    from odelab.lab.bridge import LabBridge
    from odelab.lab.registry import Registry
    from odelab.solve import session_defaults, set_session_defaults

    bridge = LabBridge(Registry(), render=lambda obj, panel: [], schedule=lambda d, f: None)
    yield bridge
    bridge.close()
    set_session_defaults()
    assert session_defaults() == {}


@pytest.mark.parametrize("message, phrase", [
    ({"type": ["list"]}, "(it must be a string)"),
    ({"type": {"a": 1}, "seq": 4}, "(it must be a string)"),
    ({"type": "open_explorer", "id": ["x"]}, "`id` must be"),
    ({"type": "settings", "settings": {"solver": ["tsit5"]}}, "`settings.solver`"),
    ({"type": "settings", "settings": {"method": {"a": 1}}}, "`settings.method`"),
    ({"type": "settings", "settings": {"rtol": [1e-6]}}, "`settings.rtol` must be a number"),
    ({"type": "settings", "settings": ["rtol"]}, "`settings` must be an object"),
    ({"type": "list", "seq": [1]}, "`seq` must be"),
])
def test_wrong_json_types_get_an_error_reply(lab_bridge, message, phrase):
    from odelab.solve import session_defaults

    comm = FakeComm()
    lab_bridge.handle(comm, message)  # raised a TypeError for a list or dict `type` before
    assert len(comm.sent) == 1 and comm.sent[0]["type"] == "error", comm.sent
    assert phrase in comm.sent[0]["message"]
    assert session_defaults() == {}


@pytest.mark.parametrize("settings, phrase", [
    ({"solver": "bogus"}, "`solver='bogus'` is not known"),
    ({"rtol": 1e-300}, "`rtol=1e-300` is below float64 resolution"),
    ({"solver": "euler"}, "`solver='euler'` has no error estimate"),
])
def test_settings_that_would_break_every_solve_are_not_stored(lab_bridge, decay, settings,
                                                               phrase):
    from odelab.solve import session_defaults

    comm = FakeComm()
    lab_bridge.handle(comm, {"type": "settings", "settings": {"solver": "dopri5"}})
    assert session_defaults() == {"solver": "dopri5"}
    lab_bridge.handle(comm, {"type": "settings", "settings": settings, "seq": 7})
    reply = comm.sent[-1]
    assert reply["type"] == "error" and reply["seq"] == 7
    assert reply["message"].startswith("settings refused, nothing changed") and phrase in (
        reply["message"]), reply
    assert session_defaults() == {"solver": "dopri5"}  # the earlier settings stand
    sol = ol.solve(decay, rtol=1e-10, atol=1e-12)  # and the user's solves keep working
    assert sol.solver == "dopri5" and abs(float(sol["x"][-1]) - math.exp(-1.0)) < 1e-8


# --------------------------------------------------------------------------------------------
# item 2: an explorer dropped by the user is freed, with its compiled programs and sidebar item
# --------------------------------------------------------------------------------------------
def test_a_dropped_explorer_is_freed_with_its_programs_and_sidebar_item():
    import gc
    import weakref

    from odelab.derivatives import programs
    from odelab.lab import feed, registry

    system = ol.System(decay_field, states=("x",), params={"k": 1.0}, y0=[1.0],
                       t_span=(0.0, 1.0), name="dropped")
    reg = registry.Registry()
    connection = feed.connect(reg)
    try:
        def explore_and_drop(background):
            explorer = ol.explore(system, background=background)
            explorer.__panel__()
            explorer.refresh()
            explorer.wait()
            explorer.compute_spectrum()  # a cached program for the explorer's own loss
            explorer.wait()
            # what the explorer computed is right: its default loss is the squared final
            # state, x(1)² = exp(-2k), whose second derivative in k is 4 exp(-2k)
            hessian = float(np.asarray(explorer.spectrum.eigenvalues)[0])
            assert abs(hessian - 4 * math.exp(-2.0)) < 1e-4 * 4 * math.exp(-2.0), hessian
            kinds = [item["kind"] for item in reg.items()]
            assert "objective" in kinds
            return weakref.ref(explorer), weakref.ref(explorer.engine), weakref.ref(system)

        for background in (False, True):
            refs = explore_and_drop(background)
            gc.collect()
            explorer, engine, _ = refs
            assert explorer() is None, "the explorer is still referenced"
            assert engine() is None, "the explorer's engine is still referenced"
            assert [i for i in reg.items() if i["kind"] == "objective"] == []
            # no cached program keeps the explorer's objective (and so its system) alive
            held = [k for k in programs._CACHE if "dropped" in repr(k)]
            assert held == [], held
    finally:
        connection.close()


# --------------------------------------------------------------------------------------------
# item 9 (part): a refusal suggests only methods that exist for the kind of system solved
# --------------------------------------------------------------------------------------------
def test_a_delay_refusal_suggests_only_delay_methods():
    import jax

    from odelab.solve import method_names

    dde = ol.DelaySystem(lambda t, y, yd, p: -p["a"] * yd[0], delays=(1.0,), history=1.0,
                         states=("x",), params={"a": 0.8}, t_span=(0.0, 2.0), name="lag")
    with pytest.raises(ol.MethodError) as info:
        jax.jvp(lambda a: ol.solve(dde, params={"a": a}, method="delay-adjoint",
                                   saveat=2).ys[-1, 0], (0.8,), (1.0,))
    message = str(info.value)
    assert "cannot be differentiated in forward mode" in message
    suggested = set(re.findall(r"method='([a-z-]+)'", message)) - {"delay-adjoint"}
    assert suggested == {"direct", "forward"}, message
    assert suggested <= set(method_names("delay"))


# --------------------------------------------------------------------------------------------
# item 9: second derivatives with respect to a delay, against exact piecewise polynomials
# --------------------------------------------------------------------------------------------
def _delay_solution(ts, a, tau, y0):
    """y(ts) of y' = -a y(t - τ), history 1 before t0 = 0, y(0) = y0: on [kτ, (k+1)τ] a
    polynomial, built exactly in rationals (method of steps by hand)."""
    from fractions import Fraction

    def shifted(c, h):  # p(t - h) from p(t) = Σ c_i t^i
        out = [Fraction(0)] * len(c)
        for i, ci in enumerate(c):
            for k in range(i + 1):
                out[k] += ci * math.comb(i, k) * (-h) ** (i - k)
        return out

    def value(c, t):
        return sum(ci * t**i for i, ci in enumerate(c))

    pieces = [[y0, -a]]  # [0, τ]: the delayed state is the history, 1
    while len(pieces) * tau < max(ts):
        k = len(pieces)
        anti = [Fraction(0)] + [-a * ci / (i + 1) for i, ci in enumerate(shifted(pieces[-1], tau))]
        anti[0] += value(pieces[-1], k * tau) - value(anti, k * tau)
        pieces.append(anti)
    return [value(pieces[min(int(t / tau), len(pieces) - 1)], t) for t in ts]


def _delay_loss_hessian(ts, a, tau, y0):
    """∂²/∂(a, τ)² of Σ y(t_i)², by Richardson-extrapolated central differences of the exact
    rational loss (no rounding; truncation O(h⁴) ≈ 1e-16)."""
    from fractions import Fraction

    ts = [Fraction(t).limit_denominator(1000) for t in ts]
    a, tau, y0 = (Fraction(v).limit_denominator(1000) for v in (a, tau, y0))

    def loss(x, s):
        return sum(v * v for v in _delay_solution(ts, x, s, y0))

    def second(h):
        aa = (loss(a + h, tau) - 2 * loss(a, tau) + loss(a - h, tau)) / h**2
        tt = (loss(a, tau + h) - 2 * loss(a, tau) + loss(a, tau - h)) / h**2
        at = (loss(a + h, tau + h) - loss(a + h, tau - h) - loss(a - h, tau + h)
              + loss(a - h, tau - h)) / (4 * h**2)
        return np.array([[aa, at], [at, tt]], dtype=object)

    h = Fraction(1, 10_000)
    return ((4 * second(h / 2) - second(h)) / 3).astype(float)


DELAY_TS = np.array([0.0, 0.5, 1.0, 1.7, 2.0, 2.5, 3.0])


@pytest.fixture(scope="module")
def lagged_decay():
    """y' = -a y(t - τ), history 1, y(0) = 2: the loss Σ y(t_i)² and its exact Hessian in (a, τ)."""
    dde = ol.DelaySystem(lambda t, y, yd, p: -p["a"] * yd[0], delays="tau", history=1.0,
                         y0=[2.0], states=("x",), params={"a": 0.8, "tau": 0.9},
                         t_span=(0.0, 3.0), name="lagged_decay")

    def loss(p):
        return jnp.sum(ol.solve(dde, params=p, saveat=DELAY_TS, solver="tsit5").ys[:, 0] ** 2)

    return dde, loss, _delay_loss_hessian(DELAY_TS, 0.8, 0.9, 2.0)


def test_the_second_derivative_in_a_delay_matches_the_closed_form(lagged_decay):
    # the reproduction: with y0 ≠ history, ∂²L/∂τ² came out about twice the true value
    dde, loss, reference = lagged_decay
    assert ol.flat_names(dde.params) == ["a", "tau"]
    h = np.asarray(ol.hessian(loss, dde.params, rtol=1e-10, atol=1e-12))
    np.testing.assert_allclose(h, reference, rtol=1e-8)
    assert abs(reference[1, 1] - 6.4825936856132) < 1e-9  # (high-precision mpmath value)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["direct", "forward"])
def test_each_second_order_route_in_a_delay_matches_the_closed_form(lagged_decay, method):
    # every method that offers second derivatives of a delay solve, not only auto's pick
    dde, loss, reference = lagged_decay
    h = np.asarray(ol.hessian(loss, dde.params, method=method, rtol=1e-10, atol=1e-12))
    np.testing.assert_allclose(h, reference, rtol=1e-7)


def test_a_delay_hvp_is_the_closed_form_hessian_times_the_vector(lagged_decay):
    dde, loss, reference = lagged_decay
    v = {"a": 0.3, "tau": -1.1}
    hv = ol.hvp(loss, dde.params, v, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose([hv["a"], hv["tau"]], reference @ np.array([0.3, -1.1]),
                               rtol=1e-7)


def test_second_derivative_refusals_for_delay_equations_point_to_delay_methods():
    from odelab.solve import method_names

    dde = ol.DelaySystem(lambda t, y, yd, p: -p["a"] * yd[0], delays=(1.0,), history=1.0,
                         states=("x",), params={"a": 0.8}, t_span=(0.0, 2.0), name="lag2")
    loss = lambda p: jnp.sum(ol.solve(dde, params=p, saveat=3).ys[:, 0] ** 2)
    delay_methods = set(method_names("delay"))
    # was a raw NotImplementedError ("Differentiation rule for 'custom_lin'")
    with pytest.raises(ol.MethodError) as info:
        ol.hessian(loss, dde.params, method="checkpoint")
    message = str(info.value)
    assert "`method='checkpoint'` has no second-order route for this delay-equation solve" in (
        message)
    assert "call ol.gradient" not in message  # it was called: no advice to call it
    assert set(re.findall(r"method='([a-z-]+)'", message)) - {"checkpoint", "auto"} <= (
        delay_methods)
    with pytest.raises(ol.MethodError) as info:
        ol.hessian(loss, dde.params, method="delay-adjoint")
    suggested = set(re.findall(r"'([a-z-]+)'", str(info.value).split("Methods that can:")[1]))
    assert suggested and suggested <= delay_methods, str(info.value)


def test_jax_grad_through_two_inner_gradient_steps(decay):
    # the reproduction: two ol.gradient steps inside jax.grad raised a raw ValueError (reverse
    # mode through the forward-mode while loop the inner gradient had chosen)
    import jax

    def unrolled(lr, loss, grad):
        p = {"k": jnp.asarray(1.0)}
        for _ in range(2):
            p = {"k": p["k"] - lr * grad(loss, p)["k"]}
        return loss(p)

    solved = lambda p: ol.solve(decay, params=p, saveat=2, rtol=1e-10, atol=1e-12).ys[-1, 0] ** 2
    exact = lambda p: jnp.exp(-2 * p["k"])  # y(1)² in closed form
    got = jax.grad(unrolled)(0.1, solved, lambda f, p: ol.gradient(f, p))
    want = jax.grad(unrolled)(0.1, exact, lambda f, p: jax.grad(f)(p))
    assert abs(float(got) - float(want)) < 1e-8 * abs(float(want)), (got, want)


def test_a_module_with_empty_fields_differentiates_and_a_none_entry_is_refused():
    """None fields of a module (a Linear without bias; the non-array parts of
    `eqx.filter(model, eqx.is_array)` as a direction) are empty subtrees, not wrong values."""
    import equinox as eqx
    import jax

    layer = eqx.nn.Linear(2, 2, use_bias=False, key=jax.random.key(0))
    x = jnp.array([1.0, -2.0])
    loss = lambda m: jnp.sum(m(x) ** 2)
    w = np.asarray(layer.weight)
    grad = ol.gradient(loss, layer)
    np.testing.assert_allclose(grad.weight, 2 * np.outer(w @ np.asarray(x), x), rtol=1e-12)
    direction = eqx.filter(jax.tree_util.tree_map(jnp.ones_like, layer), eqx.is_array)
    hvp = ol.hvp(loss, layer, direction)
    np.testing.assert_allclose(hvp.weight, 2 * np.outer(np.ones((2, 2)) @ np.asarray(x), x),
                               rtol=1e-12)
    with pytest.raises(InputError, match=r"`params\['k'\]` is None"):
        ol.gradient(lambda p: p["k"], {"k": None})
