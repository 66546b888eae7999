"""Bad input gets an OdelabError that names the argument and the fix; never a raw JAX traceback."""

import jax.numpy as jnp
import numpy as np
import pytest

import odelab as ol
from odelab import EquationError, InputError, MethodError, OdelabError, SolveError, VectorFieldError


def lv_field(t, y, p):
    x, z = y
    return jnp.stack([p["a"] * x - p["b"] * x * z, -p["c"] * z + p["d"] * x * z])


LV_PARAMS = dict(a=1.0, b=0.5, c=2.0, d=0.5)


@pytest.fixture(scope="module")
def lv():
    return ol.System(lv_field, states=("x", "z"), params=LV_PARAMS, y0=[1.0, 0.5],
                     t_span=(0.0, 5.0), name="lv")


# Each case: (what is wrong, the call, the error class, a phrase the message must contain)
def _solve_cases(lv):
    return [
        ("y0 too short", lambda: ol.solve(lv, y0=[1.0]), InputError, r"y0.*needs 2 values"),
        ("y0 not numbers", lambda: ol.solve(lv, y0=["a", "b"]), InputError, r"`y0` must be numbers"),
        ("y0 NaN", lambda: ol.solve(lv, y0=[np.nan, 1.0]), InputError, r"`y0` contains a non-finite"),
        ("y0 inf", lambda: ol.solve(lv, y0=[1.0, np.inf]), InputError, r"non-finite"),
        ("y0 dict unknown", lambda: ol.solve(lv, y0=dict(x=1, q=2)), InputError,
         r"`y0` names 'q'.*States: x, z"),
        ("y0 dict missing", lambda: ol.solve(lv, y0=dict(x=1)), InputError, r"no value for state 'z'"),
        ("params NaN", lambda: ol.solve(lv, params=dict(a=np.nan)), InputError,
         r"params\['a'\].*non-finite"),
        ("params inf", lambda: ol.solve(lv, params=dict(b=np.inf)), InputError, r"non-finite"),
        ("params unknown name", lambda: ol.solve(lv, params=dict(aa=1.0)), InputError,
         r"`params` names 'aa'.*Did you mean 'a'"),
        ("params bool", lambda: ol.solve(lv, params=dict(a=True)), InputError, r"is a bool"),
        ("params text", lambda: ol.solve(lv, params=dict(a="fast")), InputError, r"must be numbers"),
        ("params vector for scalar", lambda: ol.solve(lv, params=dict(a=[1.0, 2.0])), InputError,
         r"single number"),
        ("t_span reversed", lambda: ol.solve(lv, t_span=(5.0, 0.0)), InputError, r"runs backwards"),
        ("t_span empty", lambda: ol.solve(lv, t_span=(1.0, 1.0)), InputError, r"is empty"),
        ("t_span not a pair", lambda: ol.solve(lv, t_span=10.0), InputError, r"must be a pair"),
        ("t_span infinite", lambda: ol.solve(lv, t_span=(0.0, np.inf)), InputError, r"not finite"),
        ("unknown solver", lambda: ol.solve(lv, solver="tsit"), InputError,
         r"`solver='tsit'` is not known.*Did you mean 'tsit5'"),
        ("unknown method", lambda: ol.solve(lv, method="checkpointing"), InputError,
         r"`method='checkpointing'` is not known.*Did you mean 'checkpoint'"),
        ("rtol negative", lambda: ol.solve(lv, rtol=-1e-6), InputError, r"`rtol=-1e-06` must be a positive"),
        ("rtol zero", lambda: ol.solve(lv, rtol=0.0), InputError, r"positive number"),
        ("atol negative", lambda: ol.solve(lv, atol=-1.0), InputError, r"`atol=-1.0` must be a positive"),
        ("rtol one", lambda: ol.solve(lv, rtol=1.0), InputError, r"no accuracy at all"),
        ("rtol below float64", lambda: ol.solve(lv, rtol=1e-18), InputError, r"below float64"),
        ("rtol text", lambda: ol.solve(lv, rtol="tight"), InputError, r"`rtol` must be numbers"),
        ("max_steps negative", lambda: ol.solve(lv, max_steps=-5), InputError, r"positive whole number"),
        ("max_steps float", lambda: ol.solve(lv, max_steps=1e4), InputError, r"positive whole number"),
        ("saveat one point", lambda: ol.solve(lv, saveat=1), InputError, r"at least 2 save points"),
        ("saveat fractional count", lambda: ol.solve(lv, saveat=10.5), InputError, r"whole number"),
        ("saveat unsorted", lambda: ol.solve(lv, saveat=[0.0, 2.0, 1.0]), InputError, r"sorted"),
        ("saveat outside", lambda: ol.solve(lv, saveat=[0.0, 7.0]), InputError, r"outside t_span"),
        ("saveat unknown word", lambda: ol.solve(lv, saveat="all"), InputError, r"saveat='dense'"),
        ("dt negative", lambda: ol.solve(lv, dt=-0.1), InputError, r"positive step size"),
        ("dt too small", lambda: ol.solve(lv, dt=1e-6, max_steps=1000), InputError,
         r"needs 5000000 steps.*Raise max_steps"),
        ("euler without dt", lambda: ol.solve(lv, solver="euler"), InputError,
         r"Give a fixed step with dt="),
        ("not a system", lambda: ol.solve(lv_field), InputError, r"must be an odelab System"),
    ]


def test_at_least_thirty_solve_mistakes_are_covered(lv):
    assert len(_solve_cases(lv)) >= 30


@pytest.mark.parametrize("index", range(35))
def test_solve_mistake(lv, index):
    what, call, error, phrase = _solve_cases(lv)[index]
    with pytest.raises(error, match=phrase):
        call()


# --------------------------------------------------------------------------------------------
# defining systems
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,error,phrase",
    [
        (dict(f=lambda t, y, p: y[:1]), VectorFieldError, r"returned shape \(1,\).*one derivative"),
        (dict(f=lambda t, y, p: jnp.array([1, 2])), VectorFieldError, r"dtype int.*floating"),
        (dict(f=lambda t, y, p: p["missing"] * y), VectorFieldError, r"raised KeyError.*\(t, y, p\)"),
        (dict(f=lambda t, y, p: [y[0], y[1]]), VectorFieldError, r"returned list.*jnp.stack"),
        (dict(f=3.0), InputError, r"`f` must be a function"),
        (dict(states=("x", "x")), InputError, r"names 'x' twice"),
        (dict(states=("x", "2y")), InputError, r"not a valid name"),
        (dict(states="xy"), InputError, r"single string"),
        (dict(param_info=dict(q=dict(range=(0, 1)))), InputError, r"not a scalar parameter"),
        (dict(param_info=dict(a=dict(range=(-1, 1), log=True))), InputError, r"log scale needs"),
        (dict(param_info=dict(a=dict(range=(2, 1)))), InputError, r"lower end must be below"),
        (dict(param_info=dict(a=dict(scale=2))), InputError, r"unknown key 'scale'"),
        (dict(data=([0.0, 1.0], [[1.0], [2.0]])), InputError, r"one column per state"),
    ],
)
def test_system_definition_mistakes(kwargs, error, phrase):
    args = dict(f=lv_field, states=("x", "z"), params=LV_PARAMS, y0=[1.0, 0.5])
    args.update(kwargs)
    with pytest.raises(error, match=phrase):
        ol.System(**args)


@pytest.mark.parametrize(
    "text,phrase",
    [
        ("x' = __import__('os').system('ls')", r"not allowed|not allow|unknown|Unknown"),
        ("x' = a.real", r"attribute|Attribute"),
        ("x' = y[0]", r"index|subscript|Subscript"),
        ("x' = foo(x)", r"foo"),
        ("x' = x +", r"line 1|syntax|Syntax"),
    ],
)
def test_malformed_or_malicious_equations(text, phrase):
    with pytest.raises(EquationError, match=phrase):
        ol.System.from_equations(text, params=dict(a=1.0), y0=dict(x=1.0))


# --------------------------------------------------------------------------------------------
# failures while solving, and derivative requests
# --------------------------------------------------------------------------------------------
def test_max_steps_on_a_stiff_problem_names_a_stiff_solver():
    stiff = ol.System(lambda t, y, p: jnp.stack([-1e6 * (y[0] - jnp.cos(t))]), states=("y",),
                      y0=[0.0], t_span=(0.0, 10.0), name="stiff")
    with pytest.raises(SolveError, match=r"hit max_steps=500.*looks stiff.*solver='rodas5'"):
        ol.solve(stiff, solver="tsit5", max_steps=500)


def test_blow_up_is_explained():
    blowup = ol.System(lambda t, y, p: y**3, states=("y",), y0=[1.0], t_span=(0.0, 2.0))
    with pytest.raises(SolveError, match=r"blew up|step size .* collapsed|hit max_steps"):
        ol.solve(blowup)


def test_derivative_mistakes(lv):
    loss = lambda p: jnp.sum(ol.solve(lv, params=p, saveat=5).ys)
    with pytest.raises(MethodError, match=r"`method='backsolve'` cannot give Hessians.*'direct'"):
        ol.hessian(loss, LV_PARAMS, method="backsolve")
    with pytest.raises(MethodError, match=r"cannot give Hessian-vector products"):
        ol.hvp(loss, LV_PARAMS, LV_PARAMS, method="backsolve")
    with pytest.raises(InputError, match=r"scalar"):
        ol.gradient(lambda p: ol.solve(lv, params=p, saveat=5).ys, LV_PARAMS)
    with pytest.raises(InputError, match=r"`vector` must have the structure of `params`"):
        ol.hvp(loss, LV_PARAMS, dict(a=1.0), method="direct")
    with pytest.raises(InputError, match=r"`fun` must be a function"):
        ol.gradient("loss", LV_PARAMS)
    with pytest.raises(InputError, match=r"`method='fastest'` is not known"):
        ol.gradient(loss, LV_PARAMS, method="fastest")


def test_jax_forward_mode_through_a_reverse_only_method_is_explained(lv):
    import jax

    with pytest.raises(MethodError, match=r"cannot be differentiated in forward mode"):
        jax.jvp(lambda a: ol.solve(lv, params=dict(a=a), method="checkpoint").ys[-1, 0],
                (1.0,), (1.0,))


def test_solution_access_mistakes(lv):
    sol = ol.solve(lv, saveat=5)
    with pytest.raises(InputError, match=r"'y' is not a state.*States: x, z"):
        sol["y"]
    with pytest.raises(InputError, match=r"saveat='dense'"):
        sol.evaluate(1.0)


def test_every_error_is_an_odelab_error():
    for cls in (InputError, VectorFieldError, EquationError, SolveError, MethodError):
        assert issubclass(cls, OdelabError)
