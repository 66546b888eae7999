"""Property-based hardening (issue 19): perturbed arguments get a right answer or a named refusal.

Hypothesis perturbs one argument at a time of the public functions (NaN, inf, zero, negative and
huge numbers, wrong shapes and lengths, wrong types, unknown names, reversed spans) and the comm
messages of the lab bridge. Each call must either return the right result, judged against a
closed form, or raise an `OdelabError` whose message names the argument: never a raw error
(TypeError, ValueError, IndexError, a JAX error), which fails the test as it propagates.

The reference is exponential decay, y' = -k y, y(t0) = y0, so y(t) = y0 exp(-k (t - t0)) and
L = y(1) = y0 e^{-k} has ∂L/∂k = -y0 e^{-k}, ∂L/∂y0 = e^{-k}, ∂²L/∂k² = y0 e^{-k},
∂²L/∂k∂y0 = -e^{-k}, ∂²L/∂y0² = 0.

Budget: JAX compilation dominates, so the systems are built once per module, the valid values are
drawn so that they reuse the programs already compiled (same static structure: the same number of
save points, solver and method), and most perturbations are refused before anything compiles.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import FakeComm
from hypothesis import given, settings
from hypothesis import strategies as st

import odelab as ol
from odelab.methods import Checkpoint, FiniteDifference, Interpolating

NAN, INF = float("nan"), float("inf")
REFUSED = object()

# numbers that break naive code: non-finite, zero, negative, tiny and huge
ODD_FLOATS = st.sampled_from([NAN, INF, -INF, 0.0, -0.0, -1.0, 1e-300, 1e300, -1e300])
# values of the wrong type
WRONG_TYPES = st.one_of(
    st.none(), st.booleans(), st.text(max_size=4),
    st.lists(st.floats(-2, 2), min_size=0, max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(-2, 2), max_size=2),
    st.just(object()), st.just(lambda: 1.0),
)
JUNK = st.one_of(ODD_FLOATS, WRONG_TYPES)
TYPO_SOLVERS = st.sampled_from(["tsti5", "", "Tsit5 ", "rodas", "euler5", "kvaerno"])
TYPO_METHODS = st.sampled_from(["checkpointing", "", "adjoint", "AUTO", "finite_difference",
                                "delay-adjoint"])


def decay_field(t, y, p):
    return -p["k"] * y


DECAY = ol.System(decay_field, states=("x",), params={"k": 1.0}, y0=[1.0], t_span=(0.0, 1.0),
                  name="decay_properties")


def refused_or(call, names):
    """call()'s result, or REFUSED when it raised an OdelabError naming one of `names`.

    Any other exception propagates, and so fails the test: that is the point.
    """
    try:
        return call()
    except ol.OdelabError as error:
        message = str(error)
        assert any(name in message for name in names), (
            f"{type(error).__name__} names none of {names}: {message}")
        return REFUSED


def perturb(data, perturbations):
    """(argument, value) drawn from a table of strategies, and the ways a refusal may name it
    (or the limits a failed solve ran into)."""
    argument = data.draw(st.sampled_from(sorted(perturbations)), label="argument")
    value = data.draw(perturbations[argument], label="value")
    return argument, value, [f"`{argument}", f"{argument}=", f"{argument}[", "max_steps",
                             "solver="]


def close(value, exact, rtol=1e-5, atol=1e-9):
    value, exact = np.asarray(value, dtype=float), np.asarray(exact, dtype=float)
    assert value.shape == exact.shape, (value.shape, exact.shape)
    np.testing.assert_allclose(value, exact, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------------------------
# ol.solve
# --------------------------------------------------------------------------------------------
SAVE_TIMES = np.array([0.0, 0.25, 0.5, 1.0])  # four points: one compiled program for all valid
FINITE = st.floats(-3.0, 3.0)

SOLVE_PERTURBATIONS = {
    "y0": st.one_of(JUNK, st.lists(st.one_of(FINITE, ODD_FLOATS), min_size=0, max_size=3),
                    st.builds(lambda v: np.full((1, 1), v), FINITE)),
    "params": st.one_of(JUNK, st.fixed_dictionaries({"k": st.one_of(FINITE, JUNK)}),
                        st.fixed_dictionaries({"kk": FINITE}),
                        st.fixed_dictionaries({"k": FINITE, "extra": FINITE})),
    "t_span": st.one_of(JUNK, st.tuples(st.one_of(FINITE, ODD_FLOATS),
                                        st.one_of(FINITE, ODD_FLOATS)),
                        st.lists(FINITE, min_size=0, max_size=3)),
    "saveat": st.one_of(JUNK, st.lists(st.one_of(st.floats(0.0, 1.0), ODD_FLOATS), min_size=4,
                                       max_size=4).map(np.array),
                        st.just(SAVE_TIMES[::-1].copy()), st.just(np.zeros((2, 2))),
                        st.just(SAVE_TIMES + 5.0), st.integers(-2, 1)),
    "rtol": st.one_of(JUNK, st.floats(1e-10, 1e-4)),
    "atol": st.one_of(JUNK, st.floats(1e-12, 1e-6)),
    "max_steps": st.one_of(JUNK, st.integers(-2, 2), st.just(10**15), st.just(2.5)),
    "solver": st.one_of(JUNK, TYPO_SOLVERS),
    "method": st.one_of(JUNK, TYPO_METHODS),
    "dt": st.one_of(JUNK, st.floats(1e-3, 0.1)),
}


SOLVE_DEFAULTS = {"y0": [1.0], "params": {"k": 1.0}, "t_span": (0.0, 1.0), "rtol": 1e-6,
                  "atol": 1e-8}


@settings(max_examples=30)
@given(data=st.data())
def test_solve_refuses_or_matches_the_closed_form(data):
    argument, value, names = perturb(data, SOLVE_PERTURBATIONS)
    kwargs = {"saveat": SAVE_TIMES, "rtol": 1e-9, "atol": 1e-12, argument: value}
    sol = refused_or(lambda: ol.solve(DECAY, **kwargs), names)
    if sol is REFUSED:
        return
    assert sol.ok
    given = SOLVE_DEFAULTS.get(argument) if value is None else value  # None: the default
    y0 = float(np.ravel(given)[0]) if argument == "y0" else 1.0
    k = float(given["k"]) if argument == "params" else 1.0
    ts = np.asarray(sol.ts)
    t0 = float(given[0]) if argument == "t_span" else 0.0  # save times need not start at t0
    exact = y0 * np.exp(-k * (ts - t0))
    tol = float(given) if argument in ("rtol", "atol") else 1e-9
    close(sol.ys[:, 0], exact, rtol=max(1e3 * tol, 1e-5), atol=1e-9 + 1e3 * tol)
    if argument == "t_span":
        close(ts[np.array([0, -1])], [float(given[0]), float(given[1])], rtol=1e-12, atol=0)
    if argument == "saveat" and value is not None:
        close(ts, np.linspace(0, 1, value) if np.ndim(value) == 0 else value, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------------------------
# the derivative functions: gradient, hessian, hvp
# --------------------------------------------------------------------------------------------
def end_value(p):
    """L = y(1) = y0 e^{-k}, with y0 and k both parameters."""
    return ol.solve(DECAY, y0=jnp.reshape(p["y0"], (1,)), params={"k": p["k"]},
                    saveat=2).ys[-1, 0]


def exact_derivatives(p):
    """(gradient as a dict, Hessian in ol.flat_names order) of y0 e^{-k}, in closed form."""
    k, y0 = float(p["k"]), float(p["y0"])
    e = math.exp(-k)
    grad = {"k": -y0 * e, "y0": e}
    second = {("k", "k"): y0 * e, ("k", "y0"): -e, ("y0", "k"): -e, ("y0", "y0"): 0.0}
    names = ol.flat_names(p)
    return grad, np.array([[second[a, b] for b in names] for a in names])


VALID_VALUE = st.floats(0.1, 2.0)
# A function among the parameters is legitimate (an equinox module's activation), so are a dict
# of other keys and an array of another shape: `end_value` itself would then fail, in the
# user's code, not odelab's.
NOT_A_VALUE = st.one_of(ODD_FLOATS, st.none(), st.booleans(), st.text(max_size=4),
                        st.just(object()), st.just(np.array([True])),
                        st.lists(st.text(max_size=2), min_size=1, max_size=2))
PARAM_VALUES = st.one_of(VALID_VALUE, NOT_A_VALUE, st.just(jnp.asarray(0.5, dtype=jnp.float32)),
                         st.just(np.float32(1.25)))
DERIVATIVE_PERTURBATIONS = {
    "params['k']": PARAM_VALUES,
    "params['y0']": PARAM_VALUES,
    "params": st.one_of(st.none(), st.booleans(), st.text(max_size=4), st.just(object())),
    "method": st.one_of(TYPO_METHODS, JUNK.filter(lambda v: v is not None), st.just("auto")),
    "rtol": st.one_of(JUNK, st.floats(1e-10, 1e-7)),
    "atol": st.one_of(JUNK, st.floats(1e-12, 1e-9)),
    "solver": st.one_of(TYPO_SOLVERS, JUNK.filter(lambda v: v is not None)),
    "max_steps": st.one_of(JUNK.filter(lambda v: v is not None), st.integers(-3, 0)),
    "vector": st.one_of(JUNK, st.fixed_dictionaries({"k": PARAM_VALUES, "y0": VALID_VALUE}),
                        st.just({"k": 1.0}), st.just({"k": 1.0, "y0": 1.0, "z": 1.0})),
    "has_aux": st.one_of(JUNK, st.just(True)),
}


def _derivative_call(function, argument, value):
    p = {"k": 0.8, "y0": 1.5}
    vector = {"k": 0.3, "y0": -0.7}
    options = {"rtol": 1e-10, "atol": 1e-12}
    if argument.startswith("params["):
        p = {**p, argument[8:-2]: value}
    elif argument == "params":
        p = value
    elif argument == "vector":
        vector = value
    else:
        options[argument] = value
    if function == "hvp":
        return p, vector, lambda: ol.hvp(end_value, p, vector, **options)
    return p, vector, lambda: getattr(ol, function)(end_value, p, **options)


@settings(max_examples=30)
@given(data=st.data())
def test_derivatives_refuse_or_match_the_closed_form(data):
    function = data.draw(st.sampled_from(["gradient", "hessian", "hvp"]), label="function")
    arguments = sorted(set(DERIVATIVE_PERTURBATIONS) - {"vector", "has_aux"}
                       | ({"vector"} if function == "hvp" else set())
                       | ({"has_aux"} if function == "gradient" else set()))
    argument = data.draw(st.sampled_from(arguments), label="argument")
    value = data.draw(DERIVATIVE_PERTURBATIONS[argument], label="value")
    p, vector, call = _derivative_call(function, argument, value)
    names = [argument, f"`{argument.split('[')[0]}", "max_steps", "solver="]
    got = refused_or(call, names)
    if got is REFUSED:
        return
    grad, hessian = exact_derivatives(p)
    # With y0 = 0 the solution is 0 throughout and the step control, which watches y alone,
    # takes a few long steps: ∂L/∂y0 (the tangent e^{-kt}) is then the exact derivative of a
    # coarse discrete solve, 5e-5 off the continuous one. Known; see the report of issue 19.
    loose = 1e-4 if abs(float(p["y0"])) < 1e-8 else 1e-6
    if function == "gradient":
        close([got["k"], got["y0"]], [grad["k"], grad["y0"]], rtol=loose)
    elif function == "hessian":
        close(got, hessian, rtol=max(loose, 1e-5), atol=1e-7)
    else:
        v = np.array([float(vector[name]) for name in ol.flat_names(p)])
        want = dict(zip(ol.flat_names(p), hessian @ v))
        close([got["k"], got["y0"]], [want["k"], want["y0"]], rtol=max(loose, 1e-5), atol=1e-7)


# --------------------------------------------------------------------------------------------
# the method classes
# --------------------------------------------------------------------------------------------
COUNTS = st.one_of(JUNK, st.integers(-2, 40), st.just(np.int64(4)), st.just(2.0))
METHOD_PERTURBATIONS = {
    (Checkpoint, "checkpoints"): COUNTS,
    (Checkpoint, "tangent_rule"): JUNK,
    (Interpolating, "checkpoints"): COUNTS,
    (FiniteDifference, "step"): st.one_of(JUNK, st.floats(1e-8, 1e-2), st.just("noise"),
                                          st.just(0.5), st.just(1.0), st.just(3.0)),
    (FiniteDifference, "richardson"): JUNK,
}


@given(data=st.data())
def test_method_settings_are_refused_or_kept(data):
    cls, argument = data.draw(st.sampled_from(sorted(METHOD_PERTURBATIONS,
                                                      key=lambda c: (c[0].__name__, c[1]))),
                              label="setting")
    value = data.draw(METHOD_PERTURBATIONS[cls, argument], label="value")
    method = refused_or(lambda: cls(**{argument: value}), [f"{cls.__name__}({argument}="])
    if method is REFUSED:
        return
    kept = getattr(method, argument)
    if value is None or isinstance(value, str):
        assert kept == value
    else:
        assert float(kept) == float(value) and isinstance(kept, (bool, np.bool_)) == (
            isinstance(value, (bool, np.bool_)))


@pytest.mark.parametrize("method", [Checkpoint(checkpoints=3), FiniteDifference(step=1e-3)])
def test_accepted_method_objects_give_the_closed_form_gradient(method):
    p = {"k": 0.8, "y0": 1.5}
    grad, _ = exact_derivatives(p)
    got = ol.gradient(end_value, p, method=method, rtol=1e-10, atol=1e-12)
    close([got["k"], got["y0"]], [grad["k"], grad["y0"]], rtol=1e-6)


# --------------------------------------------------------------------------------------------
# ol.check_gradient
# --------------------------------------------------------------------------------------------
CHECK_OPTIONS = {"methods": ["checkpoint"], "rtols": (1e-8,), "diagnose": False,
                 "progress": False}
NOT_NONE = JUNK.filter(lambda v: v is not None)
CHECK_PERTURBATIONS = {
    "methods": st.one_of(NOT_NONE, st.just([]), st.lists(TYPO_METHODS, min_size=1, max_size=2),
                         st.just(["checkpoint", "checkpointing"]), st.just(["checkpoint"])),
    "rtols": st.one_of(NOT_NONE, st.just([]), st.lists(ODD_FLOATS, min_size=1, max_size=2),
                       st.just((1e-8,))),
    "reference": st.one_of(NOT_NONE, TYPO_METHODS, st.just("auto")),
    "direction": st.one_of(NOT_NONE, st.just({"k": NAN, "y0": 1.0}), st.just({"k": 1.0}),
                           st.just({"k": np.ones(2), "y0": 1.0})),
    "accuracy": st.one_of(NOT_NONE, st.just(1e-4)),
    "scale": st.one_of(NOT_NONE, st.just("autoo"), st.just("auto")),
    "max_steps": st.one_of(NOT_NONE, st.integers(-2, 0)),
    "solver": st.one_of(TYPO_SOLVERS, NOT_NONE),
    "rtol": st.one_of(NOT_NONE, st.just(1e-6)),
    "diagnose": NOT_NONE,
    "on_update": NOT_NONE,
}


@settings(max_examples=25)
@given(data=st.data())
def test_check_gradient_refuses_or_agrees_with_the_closed_form(data):
    argument, value, names = perturb(data, CHECK_PERTURBATIONS)
    p = {"k": 0.8, "y0": 1.5}
    options = {**CHECK_OPTIONS, argument: value}
    report = refused_or(lambda: ol.check_gradient(end_value, p, **options), names)
    if report is REFUSED:
        return
    grad, _ = exact_derivatives(p)
    if argument == "methods" and not report.ok:
        # a method that exists but does not apply to what `fun` solves (delay-adjoint for an
        # ODE): the check learns that only by running `fun`, and its row says so
        assert "does not apply" in report.headline, report.headline
        return
    if argument != "accuracy":  # an accuracy far below the solves' error is honestly not met
        assert report.ok, report.headline
    close(report.reference, [grad[name] for name in report.names], rtol=1e-6)


# --------------------------------------------------------------------------------------------
# ol.fit
# --------------------------------------------------------------------------------------------
def fit_loss(p):
    return (end_value(p) - 0.3) ** 2


def exact_fit_loss(p):
    return (float(p["y0"]) * math.exp(-float(p["k"])) - 0.3) ** 2


FIT_PERTURBATIONS = {
    "steps": st.one_of(NOT_NONE, st.integers(-2, 3), st.just(10**12)),
    "optimizer": st.one_of(NOT_NONE, st.just("adamm")),
    "method": st.one_of(TYPO_METHODS, NOT_NONE),
    "solver": st.one_of(TYPO_SOLVERS, NOT_NONE),
    "rtol": NOT_NONE,
    "batch_size": st.one_of(NOT_NONE, st.integers(-2, 2)),
    "callback": NOT_NONE.filter(lambda v: not callable(v)),
    "callback_every": st.one_of(NOT_NONE, st.integers(-2, 0)),
    "checkpoint_every": st.one_of(NOT_NONE, st.integers(-2, 0)),
    "resume": st.one_of(NOT_NONE, st.text(max_size=3)),
    "progress": NOT_NONE,
    "seed": st.one_of(NOT_NONE, st.just(-1), st.just(2**80)),
    "has_aux": st.one_of(NOT_NONE, st.just(True)),
    "data": NOT_NONE,
    "params": st.one_of(st.none(), st.booleans(), st.text(max_size=4), st.just(object()),
                        st.fixed_dictionaries({"k": NOT_A_VALUE, "y0": VALID_VALUE})),
}


@settings(max_examples=25)
@given(data=st.data())
def test_fit_refuses_or_reports_the_losses_it_trained(data):
    argument, value, names = perturb(data, FIT_PERTURBATIONS)
    start = {"k": 0.8, "y0": 1.5}
    options = {"params": start, "steps": 2, "progress": False, argument: value}
    result = refused_or(lambda: ol.fit(fit_loss, **options), names)
    if result is REFUSED:
        return
    assert result.steps == options["steps"] == len(result.losses)
    # the loss at each step is that of the parameters going into it: the first is the start's
    close(result.losses[0], exact_fit_loss(options["params"]), rtol=1e-6)
    close(result.best_loss, exact_fit_loss(result.best_params), rtol=1e-6)
    assert result.best_loss == min(result.losses)


# --------------------------------------------------------------------------------------------
# ol.explore
# --------------------------------------------------------------------------------------------
EXPLORE_PERTURBATIONS = {
    "solver": st.one_of(TYPO_SOLVERS, NOT_NONE, st.just("dopri5")),
    "method": st.one_of(TYPO_METHODS, NOT_NONE, st.just("checkpoint")),
    "rtol": st.one_of(NOT_NONE, st.floats(1e-10, 1e-3)),
    "atol": st.one_of(NOT_NONE, st.floats(1e-12, 1e-6)),
    "n_save": st.one_of(NOT_NONE, st.integers(-2, 1), st.just(10**9), st.integers(2, 50)),
    "y0": st.one_of(NOT_NONE, st.lists(st.one_of(FINITE, ODD_FLOATS), min_size=0, max_size=2)),
    "values": st.one_of(NOT_NONE, st.just({"kk": 2.0}),
                        st.fixed_dictionaries({"k": st.one_of(FINITE, NOT_A_VALUE)})),
    "t0": st.one_of(NOT_NONE, FINITE),
    "t1": st.one_of(NOT_NONE, st.floats(1.0, 5.0)),
    "rtl": FINITE,
    "background": NOT_NONE,
}


@settings(max_examples=30)
@given(data=st.data())
def test_explore_refuses_or_starts_with_the_settings_given(data):
    argument, value, names = perturb(data, EXPLORE_PERTURBATIONS)
    explorer = refused_or(lambda: ol.explore(DECAY, **{argument: value}), names)
    if explorer is REFUSED:
        return
    s = explorer.settings()
    if argument == "values":
        assert dict(s.values)["k"] == float(value["k"])
    elif argument == "y0":
        close(s.y0, value, rtol=0)
    elif argument == "background":
        assert explorer.background == value
    else:
        assert getattr(s, argument) == value, (getattr(s, argument), value)


# --------------------------------------------------------------------------------------------
# ol.DelaySystem
# --------------------------------------------------------------------------------------------
def delayed_decay(t, y, yd, p):
    return -p["a"] * yd[0]


DELAY_BASE = {"delays": (0.5,), "history": 1.0, "states": ("x",), "params": {"a": 0.8},
              "t_span": (0.0, 2.0)}
DELAY_PERTURBATIONS = {
    "delays": st.one_of(NOT_NONE, st.just(()), st.tuples(st.one_of(ODD_FLOATS, FINITE)),
                        st.just(("b",)), st.just(("a",)), st.just((0.5, NAN))),
    "history": st.one_of(NOT_NONE, st.just([1.0, 2.0]), st.just(lambda t: np.ones(2)),
                         st.just(lambda t: "x"), FINITE),
    "states": st.one_of(NOT_NONE, st.just(()), st.just(("1x",)), st.just(("x", "x")),
                        st.just(0), st.just(-1)),
    "params": st.one_of(NOT_NONE, st.fixed_dictionaries({"a": st.one_of(FINITE, NOT_A_VALUE)})),
    "y0": st.one_of(NOT_NONE, st.lists(st.one_of(FINITE, ODD_FLOATS), min_size=0, max_size=2)),
    "t_span": st.one_of(NOT_NONE, st.tuples(st.one_of(FINITE, ODD_FLOATS),
                                            st.one_of(FINITE, ODD_FLOATS))),
    "max_intervals": st.one_of(NOT_NONE, st.integers(-2, 0), st.integers(1, 10**6)),
    "discontinuity_order": st.one_of(NOT_NONE, st.integers(-2, 6)),
}


@given(data=st.data())
def test_delay_systems_are_refused_or_hold_what_was_given(data):
    argument, value, names = perturb(data, DELAY_PERTURBATIONS)
    given_ = {**DELAY_BASE, argument: value}
    if argument == "params":  # params of another shape reach f, which says what it could not do
        names.append("The vector field of 'delayed_decay' raised")
    system = refused_or(lambda: ol.DelaySystem(delayed_decay, **given_), names)
    if system is REFUSED:
        return
    params = system.params
    delays = [float(params[d]) if isinstance(d, str) else float(d)
              for d in np.atleast_1d(np.asarray(given_["delays"], dtype=object))]
    close(system.delay_values(), delays, rtol=0)
    assert all(d > 0 for d in delays)
    close(system.t_span, given_["t_span"], rtol=0)
    assert given_["t_span"][1] > given_["t_span"][0]
    close(params["a"], given_["params"]["a"], rtol=0)
    if argument == "y0":
        close(system.y0, value, rtol=0)


# --------------------------------------------------------------------------------------------
# ol.System.from_equations
# --------------------------------------------------------------------------------------------
VALID_TEXTS = ["x' = -k*x", "x'=-k*x", "x' = -(k*x)", "x' = -k * x\n"]
EQUATION_PERTURBATIONS = {
    "text": st.one_of(st.sampled_from(VALID_TEXTS), st.sampled_from([
        "", "x' = -k*", "x = -k*x", "x' = -k*x\nx' = 1", "x' = __import__('os')", "x' = foo(x)",
        "x' = -k*x + y", "x' = -k*x**", "x' = lambda: 1", "x' = x[0]", "x' = k.real",
        "x' = (-k*x", "1x' = -k", "x' = -k*x; y' = 1", "x'' = -k*x", "x' = 1e999*x",
    ]), st.text(max_size=12), NOT_NONE.filter(lambda v: not isinstance(v, str))),
    "params": st.one_of(NOT_NONE, st.just({"kk": 1.0}), st.just({"k": 1.0, "extra": 2.0}),
                        st.fixed_dictionaries({"k": st.one_of(FINITE, NOT_A_VALUE)})),
    "y0": st.one_of(NOT_NONE, st.just({"y": 1.0}), st.just({"x": 1.0, "y": 2.0}),
                    st.lists(st.one_of(FINITE, ODD_FLOATS), min_size=0, max_size=2),
                    st.fixed_dictionaries({"x": st.one_of(FINITE, NOT_A_VALUE)})),
    "t_span": st.one_of(NOT_NONE, st.tuples(st.one_of(FINITE, ODD_FLOATS),
                                            st.one_of(FINITE, ODD_FLOATS))),
}


@given(data=st.data())
def test_equations_are_refused_or_give_the_field_written(data):
    argument, value, names = perturb(data, EQUATION_PERTURBATIONS)
    given_ = {"text": "x' = -k*x", "params": {"k": 0.7}, "y0": {"x": 1.2}, "t_span": (0.0, 1.0),
              argument: value}
    names += ["Line ", "equation"]
    system = refused_or(lambda: ol.System.from_equations(**given_), names)
    if system is REFUSED:
        return
    assert given_["text"] in VALID_TEXTS, f"accepted {given_['text']!r}"
    assert list(system.states) == ["x"] and system.t_span[1] > system.t_span[0]
    k = float(given_["params"]["k"])
    y0 = given_["y0"]
    close(system.y0, [float(y0["x"] if isinstance(y0, dict) else y0[0])], rtol=0)
    for x in (-1.5, 0.0, 2.0):
        close(system.f(0.3, jnp.array([x]), system.params), [-k * x], rtol=1e-15)


# --------------------------------------------------------------------------------------------
# the lab bridge: comm messages
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bridge():
    from odelab.lab.bridge import LabBridge
    from odelab.lab.registry import Registry
    from odelab.solve import set_session_defaults

    bridge = LabBridge(Registry(), render=lambda obj, panel: [], schedule=lambda d, f: None)
    yield bridge
    bridge.close()
    set_session_defaults()


JSON_JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 2**70), st.floats(allow_nan=False),
    st.text(max_size=6), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
SETTING_VALUES = {
    "solver": st.one_of(JSON_JUNK, TYPO_SOLVERS, st.sampled_from(["tsit5", "euler", "kvaerno5"])),
    "method": st.one_of(JSON_JUNK, TYPO_METHODS, st.sampled_from(["auto", "checkpoint"])),
    "rtol": st.one_of(JSON_JUNK, st.sampled_from([1e-300, 1e-16, 1e-6, 0.5, 0.0, 1.0])),
    "atol": st.one_of(JSON_JUNK, st.sampled_from([1e-300, 1e-9, 0.5, -1.0])),
    "rtl": JSON_JUNK,
}
MESSAGES = st.one_of(
    st.fixed_dictionaries({"type": st.one_of(st.sampled_from(
        ["hello", "list", "status", "open_explorer", "check_gradient", "settings", "bogus"]),
        JSON_JUNK)}, optional={"id": st.one_of(JSON_JUNK, st.sampled_from(["x1", "a" * 65])),
                               "seq": JSON_JUNK, "extra": JSON_JUNK}),
    st.fixed_dictionaries({"type": st.just("settings"), "settings": st.one_of(
        JSON_JUNK, st.dictionaries(st.sampled_from(sorted(SETTING_VALUES)), st.none(),
                                   max_size=0),
        st.sampled_from(sorted(SETTING_VALUES)).flatmap(
            lambda key: st.fixed_dictionaries({key: SETTING_VALUES[key]})))},
        optional={"seq": st.integers(0, 10)}),
    JSON_JUNK,
)
RAW_ERRORS = ("TypeError", "ValueError", "KeyError", "IndexError", "AttributeError",
              "Traceback", "XlaRuntimeError")


@settings(max_examples=80)
@given(message=MESSAGES)
def test_comm_messages_get_a_reply_and_never_break_the_settings(bridge, message):
    from odelab.solve import session_defaults, set_session_defaults

    comm = FakeComm()
    bridge.handle(comm, message)  # raises nothing, whatever it is sent
    assert comm.sent, "no reply"
    for reply in comm.sent:
        assert reply["type"] in ("items", "status", "defaults", "display", "error",
                                 "capabilities"), reply
        if reply["type"] == "error":
            text = reply["message"]
            assert isinstance(text, str) and text, reply
            assert not any(name in text for name in RAW_ERRORS), text
    # whatever was stored would pass ol.solve's own checks: storing it again is accepted
    stored = session_defaults()
    set_session_defaults(**stored)
    assert session_defaults() == stored
