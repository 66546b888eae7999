"""The safe equation parser: semantics against numpy references, safety, and error messages."""

from __future__ import annotations

import builtins
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import odelab
from odelab import EquationError, System
from odelab.system.equations import parse_equations

LV_TEXT = """
# Lotka-Volterra
x' = a*x - b*x*y
y' = -c*y + d*x*y
"""
LV_PARAMS = dict(a=1.5, b=0.7, c=2.0, d=0.4)


def lv_numpy(y, p):
    x, z = y
    return np.array([p["a"] * x - p["b"] * x * z, -p["c"] * z + p["d"] * x * z])


@pytest.fixture(scope="module")
def lv():
    return parse_equations(LV_TEXT, LV_PARAMS)


# -- semantics ------------------------------------------------------------------------------------
def test_lotka_volterra_matches_hand_written_field(lv):
    assert lv.states == ("x", "y")
    assert lv.param_names == ("a", "b", "c", "d")
    assert lv.rhs_text == ("a*x - b*x*y", "-c*y + d*x*y")
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.uniform(-5, 5, size=2)
        p = {k: float(v) for k, v in zip(LV_PARAMS, rng.uniform(0.1, 3, size=4), strict=True)}
        got = lv.vector_field(float(rng.uniform(0, 10)), jnp.asarray(y), p)
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(got), lv_numpy(y, p), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize(
    "text",
    [
        "dx/dt = a*x - b*x*y\ndy/dt = -c*y + d*x*y",
        "d(x)/dt = a*x - b*x*y; d( y )/dt = -c*y + d*x*y",
        "d x / d t = a*x-b*x*y   # spaces are fine\n\n  y'=-c*y+d*x*y",
        "x' = a*x - b*x*y; dy/dt = -c*y + d*x*y;",
    ],
)
def test_derivative_notations_agree(text, lv):
    parsed = parse_equations(text, LV_PARAMS)
    assert parsed.states == ("x", "y")
    y = jnp.array([1.3, 0.4])
    np.testing.assert_array_equal(
        parsed.vector_field(0.0, y, LV_PARAMS), lv.vector_field(0.0, y, LV_PARAMS)
    )


def test_grad_and_jacobian_through_parsed_field(lv):
    y = jnp.array([1.3, 0.4])
    p = {k: jnp.asarray(v) for k, v in LV_PARAMS.items()}
    jac = jax.jacfwd(lv.vector_field, argnums=1)(0.0, y, p)
    x, z = 1.3, 0.4
    a, b, c, d = (LV_PARAMS[k] for k in "abcd")
    expected = np.array([[a - b * z, -b * x], [d * z, -c + d * x]])
    np.testing.assert_allclose(jac, expected, rtol=1e-14)
    grads = jax.grad(lambda q: jnp.sum(lv.vector_field(0.0, y, q) ** 2))(p)
    f = lv_numpy([x, z], LV_PARAMS)
    np.testing.assert_allclose(grads["a"], 2 * f[0] * x, rtol=1e-13)
    np.testing.assert_allclose(grads["b"], -2 * f[0] * x * z, rtol=1e-13)
    np.testing.assert_allclose(grads["c"], -2 * f[1] * z, rtol=1e-13)
    np.testing.assert_allclose(grads["d"], 2 * f[1] * x * z, rtol=1e-13)


def test_jit_and_vmap(lv):
    ys = jnp.asarray(np.random.default_rng(1).uniform(0, 3, size=(5, 2)))
    batched = jax.jit(jax.vmap(lv.vector_field, in_axes=(None, 0, None)))(0.0, ys, LV_PARAMS)
    expected = np.stack([lv_numpy(np.asarray(y), LV_PARAMS) for y in ys])
    np.testing.assert_allclose(batched, expected, rtol=1e-14)


@pytest.mark.parametrize(
    ("rhs", "expected"),
    [
        ("2*x^2", 2 * 3.0**2),
        ("-x^2", -(3.0**2)),
        ("2^3^2", 2.0 ** (3.0**2)),  # right-associative, as in mathematics
        ("x - 1 - 1", 1.0),
        ("x / 2 / 3", 0.5),
        ("1e-3*x + .5 + 2E1", 3e-3 + 0.5 + 20.0),
        ("pi*e + t", math.pi * math.e + 0.25),
        ("(x + 1)*(x - 1)", 8.0),
        ("--x", 3.0),
        ("+x", 3.0),
        ("x**-1", 1 / 3.0),
        ("(-x)^2", 9.0),
        ("(-x)^3", -27.0),
        ("(-x)^2.0", 9.0),
        ("(-x)^0.5", math.nan),
        ("pow(x, 2)", 9.0),
        ("min(x, 1, 2)", 1.0),
        ("max(x, 1, 2)", 3.0),
        ("step(x - 3)", 0.5),
        ("heaviside(x - 4)", 0.0),
        ("heaviside(x - 3, 1)", 1.0),
        ("step(log(-x))", math.nan),  # a NaN switch stays NaN instead of becoming 1/2
        ("sign(-x)", -1.0),
        ("atan2(1, 1)", math.pi / 4),
        ("log(-x)", math.nan),
        ("1/(x - 3)", math.inf),
    ],
)
def test_operators_precedence_and_edge_values(rhs, expected):
    field = parse_equations(f"x' = {rhs}").vector_field
    got = float(field(0.25, jnp.array([3.0]), {})[0])
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, rel=1e-14)


REFERENCE_FUNCTIONS = {
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "exp": np.exp, "log": np.log,
    "log10": np.log10, "sqrt": np.sqrt, "abs": np.abs, "tanh": np.tanh, "sinh": np.sinh,
    "cosh": np.cosh, "arcsin": np.arcsin, "arccos": np.arccos, "arctan": np.arctan,
    "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sign": np.sign,
    "heaviside": lambda x: np.heaviside(x, 0.5), "step": lambda x: np.heaviside(x, 0.5),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(REFERENCE_FUNCTIONS))
def test_each_unary_function_matches_numpy(name):
    field = parse_equations(f"x' = {name}(x)").vector_field
    for value in (-0.7, 0.0, 0.3, 0.9):
        got = float(field(0.0, jnp.array([value]), {})[0])
        with np.errstate(all="ignore"):  # log(-0.7) is nan in both, without a warning here
            expected = REFERENCE_FUNCTIONS[name](value)
        np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-300)


def test_integer_powers_are_smooth_at_zero():
    field = parse_equations("x' = x^3 + x^2").vector_field
    grad = jax.grad(lambda y: field(0.0, y, {})[0])(jnp.array([0.0]))
    assert float(grad[0]) == 0.0  # a float exponent would give 0 * log(0) = nan here


def test_constant_right_hand_side_and_integer_state_give_floats():
    parsed = parse_equations("x' = 1\ny' = x")
    out = parsed.vector_field(0.0, jnp.array([2, 3]), {})
    assert jnp.issubdtype(out.dtype, jnp.floating)
    np.testing.assert_array_equal(out, [1.0, 2.0])


def test_unused_params_are_fine_and_not_listed():
    parsed = parse_equations("x' = -k*x", dict(k=1.0, unused=2.0))
    assert parsed.param_names == ("k",)


def test_system_from_equations():
    system = System.from_equations(LV_TEXT, params=LV_PARAMS, y0=dict(x=1.0, y=0.5))
    assert system.states == ("x", "y")
    np.testing.assert_allclose(system(0.0, system.y0), lv_numpy([1.0, 0.5], LV_PARAMS))


def test_the_text_is_never_executed(monkeypatch, tmp_path):
    """eval/exec are never called, and compile only ever builds a syntax tree."""
    real_compile = builtins.compile

    def forbidden(*args, **kwargs):
        raise AssertionError("the parser must not evaluate text")

    def ast_only_compile(source, filename, mode, flags=0, *args, **kwargs):
        assert flags & 0x400, "compile called for code, not for a syntax tree"  # PyCF_ONLY_AST
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(builtins, "compile", ast_only_compile)
    target = tmp_path / "pwned"
    with pytest.raises(EquationError):
        parse_equations(f"x' = open({str(target)!r}, 'w')")
    parse_equations(LV_TEXT, LV_PARAMS).vector_field(0.0, jnp.ones(2), LV_PARAMS)
    assert not target.exists()


# -- rejection and messages -----------------------------------------------------------------------
MALICIOUS = [
    ("x' = __import__('os')", r"`__import__` is not allowed.*double underscores"),
    ("x' = __import__('os').system('ls')", r"attribute access"),
    ("x' = ().__class__", r"`\(\)\.__class__` is not allowed.*attribute access"),
    ("x' = x.__class__.__bases__[0].__subclasses__()", r"attribute access"),
    ("x' = a.b", r"`a\.b` is not allowed.*attribute access"),
    ("x' = y[0]", r"indexing"),
    ("x' = (lambda: 1)()", r"lambda"),
    ("x' = open('f')", r"unknown function `open`.*Allowed functions: sin"),
    ("x' = eval('1')", r"unknown function `eval`"),
    ("x' = getattr(x, 'real')", r"unknown function `getattr`"),
    ('x\' = "s"', r"strings"),
    ("x' = b'bytes'", r"strings"),
    ("x' = f'{x}'", r"f-strings"),
    ("x' = [v for v in range(3)]", r"comprehensions"),
    ("x' = sum(v for v in x)", r"unknown function `sum`"),
    ("x' = sin(x=1)", r"keyword arguments"),
    ("x' = exp(*x)", r"starred"),
    ("x' = x if x else 1", r"conditional expressions"),
    ("x' = x < 1", r"comparisons"),
    ("x' = x and 1", r"boolean operators"),
    ("x' = not x", r"`not`"),
    ("x' = (y := 2)", r"assignment expressions"),
    ("x' = x, 1", r"tuples"),
    ("x' = {}", r"dicts"),
    ("x' = x // 2", r"floor division"),
    ("x' = x % 2", r"remainder"),
    ("x' = x @ x", r"matrix multiplication"),
    ("x' = 1j", r"complex numbers"),
    ("x' = None", r"constant None"),
    ("x' = True", r"constant True"),
    ("x' = __builtins__", r"double underscores"),
    ("x' = x(2)", r"`x` is not a function"),
    ("x' = sin", r"`sin` is a function; call it"),
    ("x' = sin(x, 1)", r"`sin` takes 1 argument"),
    ("x' = max(x)", r"`max` takes 2 or more arguments"),
    ("x' = 1e999", r"too large"),
    ("x' = 1 +", r"not a valid expression"),
    ("x' = " + "(" * 300 + "x" + ")" * 300, r"not a valid expression"),
    ("x' = " + "x+" * 400 + "x", r"nested more than 200 levels"),
    ("x' = 1 = 2", r"more than one `=`"),
]


@pytest.mark.parametrize(("text", "match"), MALICIOUS, ids=[t[:40] for t, _ in MALICIOUS])
def test_malicious_and_malformed_inputs_are_rejected(text, match):
    with pytest.raises(EquationError, match=match) as info:
        parse_equations(text, dict(a=1.0, b=2.0))
    message = str(info.value)
    assert message.startswith("Line 1 (`x' = ")  # names the line and shows it


@pytest.mark.parametrize(
    ("text", "params", "match"),
    [
        ("", None, r"no equations"),
        ("  # only a comment\n\n", None, r"no equations"),
        ("x = 1", None, r"left side `x` is not a derivative.*x' = \.\.\."),
        ("x'' = -x", None, r"second derivative.*velocity state"),
        ("x' = 1\nx' = 2", None, r"Line 2.*`x` already has an equation on line 1"),
        ("x' 1", None, r"Line 1.*no `=`"),
        ("x' = a*x", dict(x=1.0), r"`x` is both a parameter and a state"),
        ("x' = a*x", dict(sin=1.0), r"`sin` is the name of a function.*parameter"),
        ("x' = k*x", dict(t=1.0), r"`t` is the time variable"),
        ("exp' = 1", None, r"`exp` is the name of a function.*state"),
        ("e' = 1", None, r"`e` is the constant 2.71828"),
        ("__x' = 1", None, r"double underscore"),
        ("lambda' = 1", None, r"not a valid name"),
        (
            "x' = -k*x",
            None,
            r"Unknown name `k` \(line 1\).*Add missing parameters to params=.*'k': 1.0",
        ),
        (
            "x' = alpah*x - bta*x*y\ny' = -gamma*y",
            dict(alpha=1.0, beta=1.0, gamma=1.0),
            r"`alpah` \(line 1; did you mean 'alpha'\?\), `bta` \(line 1; did you mean 'beta'\?\)",
        ),
        ("x' = -k*x", [1.0], r"`params` must be a dict"),
        (42, None, r"`text` must be the equations as a str"),
    ],
)
def test_error_messages_name_the_problem_and_the_fix(text, params, match):
    with pytest.raises(EquationError, match=match):
        parse_equations(text, params)


def test_missing_params_are_all_listed():
    with pytest.raises(EquationError) as info:
        parse_equations("x' = a*x - b*x*y\ny' = -c*y + d*x*y", dict(a=1.0, c=1.0))
    message = str(info.value)
    assert "`b` (line 1)" in message and "`d` (line 2)" in message
    assert "params={'b': 1.0, 'd': 1.0}" in message


def test_vector_field_reports_a_missing_parameter_value(lv):
    with pytest.raises(EquationError, match=r"parameter `a`"):
        lv.vector_field(0.0, jnp.ones(2), {})
    with pytest.raises(EquationError, match=r"y needs shape \(2,\)"):
        lv.vector_field(0.0, jnp.ones(3), LV_PARAMS)


# -- property tests -------------------------------------------------------------------------------
EPS = np.finfo(np.float64).eps
FUNCTION_ULPS = 32.0  # allowance for libm/XLA differences in transcendental functions
TINY = 1e-300  # absolute slack: XLA may flush subnormals to zero
UNARY = sorted(REFERENCE_FUNCTIONS)
ENV_NAMES = ("x", "y", "a", "b", "t")
SIGNATURES = [(name, 1) for name in UNARY] + [
    ("min", 2), ("max", 3), ("atan2", 2), ("arctan2", 2), ("pow", 2), ("heaviside", 2),
]  # fmt: skip


class Ambiguous(Exception):
    """The reference sits on a boundary (overflow, pole, branch cut) where rounding decides."""


def numbers():
    return st.one_of(
        st.integers(0, 12).map(str),
        st.floats(0, 20, allow_nan=False, allow_infinity=False).map(repr),
    )


def leaves():
    return st.one_of(
        st.sampled_from([*ENV_NAMES, "pi", "e"]).map(lambda n: ("name", n)),
        numbers().map(lambda text: ("num", text)),
    )


def compound(children):
    """One operator or function call applied to trees drawn from `children`."""

    def call(signature):
        name, arity = signature
        return st.tuples(st.just("call"), st.just(name), st.tuples(*[children] * arity))

    return st.one_of(
        st.tuples(st.sampled_from(["neg", "pos"]), children),
        st.tuples(
            st.just("bin"), st.sampled_from(["+", "-", "*", "/", "**", "^"]), children, children
        ),
        st.sampled_from(SIGNATURES).flatmap(call),
    )


def expression_trees():
    """Random trees of the grammar, with at least one operator or call."""
    return compound(st.recursive(leaves(), compound, max_leaves=10))


PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "unary": 3, "**": 4, "^": 4, "atom": 5}


def render(tree, extra_parens) -> tuple[str, int]:
    """Text for `tree` with only the parentheses precedence needs (plus some random extra ones)."""
    kind = tree[0]
    if kind in ("num", "name"):
        text, level = tree[1], PRECEDENCE["atom"]
    elif kind in ("neg", "pos"):
        inner, inner_level = render(tree[1], extra_parens)
        inner = f"({inner})" if inner_level < PRECEDENCE["unary"] else inner
        text, level = ("-" if kind == "neg" else "+") + inner, PRECEDENCE["unary"]
    elif kind == "bin":
        op, (left, left_level), (right, right_level) = (
            tree[1], render(tree[2], extra_parens), render(tree[3], extra_parens)
        )  # fmt: skip
        level = PRECEDENCE[op]
        right_assoc = op in ("**", "^")
        if left_level < level or (right_assoc and left_level <= level):
            left = f"({left})"
        if right_level < level or (not right_assoc and right_level <= level):
            right = f"({right})"
        text = f"{left} {op} {right}"
    else:
        args = ", ".join(render(arg, extra_parens)[0] for arg in tree[2])
        text, level = f"{tree[1]}({args})", PRECEDENCE["atom"]
    if extra_parens.draw(st.booleans()):
        text, level = f"({text})", PRECEDENCE["atom"]
    return text, level


def integer_literal(tree):
    if tree[0] == "num" and tree[1].isdigit():
        return int(tree[1])
    if tree[0] in ("neg", "pos") and tree[1][0] == "num" and tree[1][1].isdigit():
        return int(tree[1][1]) * (-1 if tree[0] == "neg" else 1)
    return None


def reference(tree, env) -> tuple[float, float]:
    """(value, error bound) of `tree` in float64 numpy, by running error analysis.

    The bound covers how far any faithful float64 evaluation may land from the exact value;
    `Ambiguous` is raised where a rounding error could change the branch (poles, domain edges).
    """
    kind = tree[0]
    if kind == "num":
        return leaf(float(tree[1]))
    if kind == "name":
        if tree[1] in ("pi", "e"):
            return getattr(math, tree[1]), 0.0
        return leaf(env[tree[1]])
    if kind in ("neg", "pos"):
        v, err = reference(tree[1], env)
        return (-v if kind == "neg" else v), err
    if kind == "bin" and tree[1] in ("**", "^"):
        return reference_power(tree[2], tree[3], env)
    if kind == "call" and tree[1] == "pow":
        return reference_power(*tree[2], env)
    values = [reference(child, env) for child in (tree[2:] if kind == "bin" else tree[2])]
    if (
        math.isnan(values[0][0])
        or (kind == "bin" or tree[1] != "heaviside")
        and any(math.isnan(v) for v, _ in values)
    ):  # NaN spreads, except that heaviside's value at zero only matters at zero
        return math.nan, 0.0
    if kind == "bin":
        return checked(*reference_arithmetic(tree[1], *values[0], *values[1]))
    return checked(*reference_function(tree[1], values))


def leaf(value):
    return value, (TINY if 0 < abs(value) < 1e-300 else 0.0)  # XLA flushes subnormals to 0


def checked(v, err):
    if math.isnan(v):
        return v, 0.0
    if (
        not math.isfinite(v)
        or abs(v) > 1e300
        or not math.isfinite(err)
        or err > 1e-3 * (1 + abs(v))
    ):
        raise Ambiguous  # overflow, or so ill-conditioned that first-order bounds are unreliable
    return v, err + TINY


def reference_arithmetic(op, a, ea, b, eb):
    if op == "+":
        v = a + b
        return v, ea + eb + EPS * abs(v)
    if op == "-":
        v = a - b
        return v, ea + eb + EPS * abs(v)
    if op == "*":
        v = a * b
        return v, abs(a) * eb + abs(b) * ea + ea * eb + EPS * abs(v)
    if abs(b) <= 2 * eb or b == 0:
        raise Ambiguous
    v = a / b
    return v, (ea + abs(v) * eb) / (abs(b) - eb) + EPS * abs(v)


def reference_power(base_tree, exponent_tree, env):
    a, ea = reference(base_tree, env)
    k = integer_literal(exponent_tree)
    if math.isnan(a):
        raise Ambiguous  # nan**0 == 1: fine in both, but not worth special-casing
    if k == 0:
        return 1.0, 0.0
    if k is not None:
        if k < 0 and abs(a) <= 2 * ea or (k < 0 and a == 0):
            raise Ambiguous
        with np.errstate(all="ignore"):
            v = float(np.power(a, float(k)))
        slope = abs(k) * (abs(a) + ea) ** (abs(k) - 1) if k > 0 else abs(k * v / a) * 2
        return checked(v, slope * ea + (2 + 2 * abs(k)) * EPS * abs(v))
    b, eb = reference(exponent_tree, env)
    if math.isnan(b) or abs(a) <= 2 * ea or a == 0:
        raise Ambiguous
    if a < 0 and b != round(b):
        if eb > 0 and abs(b - round(b)) <= 2 * eb:
            raise Ambiguous
        return math.nan, 0.0
    if a < 0 and eb > 0:
        raise Ambiguous
    with np.errstate(all="ignore"):
        v = float(np.power(a, b))
    log_a = math.log(abs(a))
    err = abs(b * v / a) * ea + abs(log_a * v) * eb
    return checked(v, err + FUNCTION_ULPS * EPS * abs(v) * (1 + abs(b * log_a)))


DERIVATIVES = {
    "sin": np.cos,
    "cos": np.sin,
    "tan": lambda x: 1 + np.tan(x) ** 2,
    "exp": np.exp,
    "log": lambda x: 1 / x,
    "log10": lambda x: 1 / (x * math.log(10)),
    "sqrt": lambda x: 0.5 / np.sqrt(x),
    "abs": lambda x: 1.0,
    "tanh": lambda x: 1.0,
    "sinh": np.cosh,
    "cosh": np.sinh,
    "arcsin": lambda x: 1 / np.sqrt(1 - x * x),
    "arctan": lambda x: 1.0,
}  # fmt: skip (absolute values are taken; bounds, not exact derivatives, where noted)
DERIVATIVES.update(asin=DERIVATIVES["arcsin"], arccos=DERIVATIVES["arcsin"])
DERIVATIVES.update(acos=DERIVATIVES["arcsin"], atan=DERIVATIVES["arctan"])


def reference_function(name, values):
    if name in ("min", "max"):
        pick = min if name == "min" else max
        return pick(v for v, _ in values), max(err for _, err in values)
    if name in ("atan2", "arctan2"):
        (y, ey), (x, ex) = values
        r = math.hypot(x, y)
        if r <= 4 * (ex + ey) or r < 1e-150 or (x < 0 and abs(y) <= 2 * ey):
            raise Ambiguous  # near the origin or on the branch cut
        v = math.atan2(y, x)
        return v, 2 * (abs(x) * ey + abs(y) * ex) / r / r + FUNCTION_ULPS * EPS * abs(v)
    if name in ("heaviside", "step", "sign"):
        (x, ex), *rest = values
        if ex > 0 and abs(x) <= 2 * ex:
            raise Ambiguous
        if name == "sign":
            return float(np.sign(x)), 0.0
        at_zero, e_zero = rest[0] if rest else (0.5, 0.0)
        return (at_zero, e_zero) if x == 0 else (float(x > 0), 0.0)
    ((x, ex),) = values
    if name in ("log", "log10", "sqrt") and x < -2 * ex:
        return math.nan, 0.0
    if name in ("log", "log10", "sqrt") and x <= 2 * ex:
        raise Ambiguous
    if name in ("arcsin", "arccos", "asin", "acos") and abs(x) > 1 + 2 * ex:
        return math.nan, 0.0
    if name in ("arcsin", "arccos", "asin", "acos") and abs(x) >= 1 - 2 * ex:
        raise Ambiguous
    with np.errstate(all="ignore"):
        v = float(REFERENCE_FUNCTIONS[name](x))
        slope = abs(float(DERIVATIVES[name](x)))
    return v, slope * (ex + FUNCTION_ULPS * EPS * abs(x)) + FUNCTION_ULPS * EPS * abs(v)


env_values = st.floats(-3, 3, allow_nan=False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    tree=expression_trees(),
    envs=st.lists(
        st.fixed_dictionaries({name: env_values for name in ENV_NAMES}), min_size=6, max_size=6
    ),
    data=st.data(),
)
def test_random_expressions_match_a_numpy_reference(tree, envs, data):
    text, _ = render(tree, data)
    parsed = parse_equations(f"x' = {text}\ny' = 0", {"a": 1.0, "b": 1.0})

    # The field broadcasts: evaluate all points at once with (n_points,)-shaped entries.
    column = {name: jnp.array([env[name] for env in envs]) for name in ENV_NAMES}
    y = jnp.stack([column["x"], column["y"]])
    first = parsed.vector_field(column["t"], y, dict(a=column["a"], b=column["b"]))[0]
    got = np.broadcast_to(np.asarray(first), (len(envs),))
    checked_points = 0
    for env, value in zip(envs, got, strict=True):
        try:
            expected, bound = reference(tree, env)
        except Ambiguous:
            continue
        checked_points += 1
        if math.isnan(expected):
            assert math.isnan(value), (text, env)
        else:
            assert abs(value - expected) <= 2 * bound, (text, env, value, expected, bound)
    assume(checked_points > 0)


GRAMMAR_CHARACTERS = list("xyzt'=+-*/^()., 0123456789e_#;\n[]{}\"\\:<>!@%&|~abcdinsqrpolw")


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=40),
        st.text(st.sampled_from(GRAMMAR_CHARACTERS), max_size=40),
        st.text(st.sampled_from(GRAMMAR_CHARACTERS), max_size=30).map(lambda s: "x' = " + s),
    )
)
def test_junk_text_raises_only_equation_errors(text):
    try:
        parsed = parse_equations(text)
    except EquationError as err:
        assert str(err)  # never an empty message
        return
    out = parsed.vector_field(0.5, jnp.ones(len(parsed.states)), {})
    assert out.shape == (len(parsed.states),)
    assert jnp.issubdtype(out.dtype, jnp.floating)


def test_odelab_reexports_the_error():
    assert odelab.EquationError is EquationError
    assert issubclass(EquationError, odelab.OdelabError)
