"""A safe parser for equations typed as text: ``x' = a*x - b*x*y``.

The right-hand sides are read with Python's `ast` module (parsing only, never evaluated) and every
node is checked against a small grammar: numbers, names, + - * / ** ^, unary minus, parentheses and
calls of whitelisted math functions. The checked tree is turned into a closure over jax.numpy, so
the result is differentiable and jit-compatible, and nothing from the text is ever executed.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import keyword
import math
import re
import unicodedata
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from .._errors import EquationError, closest

__all__ = ["FUNCTIONS", "ParsedEquations", "parse_equations"]

Env = dict[str, Any]
Compiled = Callable[[Env], Any]

TIME = "t"
CONSTANTS = {"pi": math.pi, "e": math.e}
MAX_DEPTH = 200  # deeper trees are surely not hand-typed; this also bounds our recursion
MAX_TEXT = 100_000
MAX_INTEGER_POWER = 1024  # x**k with a literal integer k uses exact repeated multiplication


def _heaviside(x: Any, at_zero: Any = 0.5) -> jax.Array:
    x = jnp.asarray(x)
    # jnp.heaviside maps NaN to `at_zero`; keep NaN so a bad state stays visible.
    return jnp.where(jnp.isnan(x), x, jnp.heaviside(x, at_zero))


def _min(*args: Any) -> jax.Array:
    return functools.reduce(jnp.minimum, args)


def _max(*args: Any) -> jax.Array:
    return functools.reduce(jnp.maximum, args)


@dataclasses.dataclass(frozen=True)
class _Function:
    fn: Callable[..., Any]
    min_args: int
    max_args: int | None  # None: any number from min_args up

    def arity(self) -> str:
        if self.max_args == self.min_args:
            return f"{self.min_args} argument{'s' if self.min_args != 1 else ''}"
        if self.max_args is None:
            return f"{self.min_args} or more arguments"
        return f"{self.min_args} to {self.max_args} arguments"


def _unary(fn: Callable[..., Any]) -> _Function:
    return _Function(fn, 1, 1)


FUNCTIONS: dict[str, _Function] = {
    "sin": _unary(jnp.sin),
    "cos": _unary(jnp.cos),
    "tan": _unary(jnp.tan),
    "exp": _unary(jnp.exp),
    "log": _unary(jnp.log),
    "log10": _unary(jnp.log10),
    "sqrt": _unary(jnp.sqrt),
    "abs": _unary(jnp.abs),
    "tanh": _unary(jnp.tanh),
    "sinh": _unary(jnp.sinh),
    "cosh": _unary(jnp.cosh),
    "arcsin": _unary(jnp.arcsin),
    "arccos": _unary(jnp.arccos),
    "arctan": _unary(jnp.arctan),
    "asin": _unary(jnp.arcsin),
    "acos": _unary(jnp.arccos),
    "atan": _unary(jnp.arctan),
    "arctan2": _Function(jnp.arctan2, 2, 2),
    "atan2": _Function(jnp.arctan2, 2, 2),
    "min": _Function(_min, 2, None),
    "max": _Function(_max, 2, None),
    "heaviside": _Function(_heaviside, 1, 2),
    "step": _Function(_heaviside, 1, 2),
    "sign": _unary(jnp.sign),
    "pow": _Function(jnp.power, 2, 2),
}
"""The functions equations may call (``heaviside(x)`` is 0 below zero, 1 above, 1/2 at 0)."""

_BINARY_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: jnp.add,
    ast.Sub: jnp.subtract,
    ast.Mult: jnp.multiply,
    ast.Div: jnp.true_divide,
}

# What equations may not contain, by node or operator type, named the way the user wrote it.
_REFUSED: dict[type, str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing (`[...]`)",
    ast.Slice: "slices",
    ast.Lambda: "lambda functions",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions",
    ast.Compare: "comparisons (for a switch at x = a use heaviside(x - a))",
    ast.BoolOp: "boolean operators (and, or)",
    ast.NamedExpr: "assignment expressions (:=)",
    ast.Starred: "starred expressions (*x)",
    ast.JoinedStr: "f-strings",
    ast.FormattedValue: "f-strings",
    ast.IfExp: "conditional expressions (use heaviside, min or max instead)",
    ast.List: "lists",
    ast.Tuple: "tuples (a comma outside a function call makes one)",
    ast.Set: "sets",
    ast.Dict: "dicts",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.FloorDiv: "floor division (//)",
    ast.Mod: "the remainder operator (%)",
    ast.MatMult: "matrix multiplication (@)",
    ast.BitAnd: "bitwise operators (&)",
    ast.BitOr: "bitwise operators (|)",
    ast.LShift: "bit shifts (<<)",
    ast.RShift: "bit shifts (>>)",
    ast.Not: "`not`",
    ast.Invert: "bitwise inversion (~)",
}

ALLOWED = (
    "Allowed: numbers, the names of states and parameters, t, pi, e, + - * / ** ^, "
    "parentheses and the functions " + ", ".join(FUNCTIONS) + "."
)

_LHS_PATTERNS = (
    re.compile(r"^(?P<name>[^\W\d]\w*)\s*'$"),
    re.compile(r"^d\s*(?P<name>[^\W\d]\w*)\s*/\s*d\s*t$"),
    re.compile(r"^d\s*\(\s*(?P<name>[^\W\d]\w*)\s*\)\s*/\s*d\s*t$"),
)
_ASSIGN = re.compile(r"(?<![<>!=:])=(?!=)")  # a bare '=', not part of ==, <=, >=, != or :=


@dataclasses.dataclass(frozen=True)
class ParsedEquations:
    """The result of `parse_equations`.

    `states` are in the order of the equations, `param_names` are the parameters the equations
    use (in the order of `params=`), `vector_field(t, y, p)` returns dy/dt as a float array with
    `p` a dict of parameter values, and `rhs_text` holds each right-hand side as typed.
    """

    states: tuple[str, ...]
    param_names: tuple[str, ...]
    vector_field: Callable[[Any, Any, Mapping[str, Any]], jax.Array]
    rhs_text: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _Statement:
    line: int
    text: str
    state: str
    rhs: str


def parse_equations(text: str, params: Mapping[str, Any] | None = None) -> ParsedEquations:
    """Read equations such as ``x' = a*x - b*x*y`` into a JAX vector field.

    One equation per line (or separated by ``;``), in the forms ``x' = ...``, ``dx/dt = ...`` or
    ``d(x)/dt = ...``; blank lines and ``#`` comments are ignored. Right-hand sides may use
    numbers, states, parameters (the keys of `params`), ``t``, ``pi``, ``e``, ``+ - * / ** ^``,
    parentheses and the functions in `FUNCTIONS`. Anything else raises `EquationError`.

        >>> eq = parse_equations("x' = -k*x", params={"k": 0.5})
        >>> eq.vector_field(0.0, jnp.array([2.0]), {"k": 0.5})
        Array([-1.], dtype=float64)
    """
    statements = _read_statements(text)
    states = tuple(s.state for s in statements)
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        raise EquationError(
            f"`params` must be a dict of parameter values, e.g. params={{'k': 1.0}}; got "
            f"{type(params).__name__}."
        )
    _check_param_names(params, states)
    compiler = _Compiler(states=states, params=tuple(params))
    compiled = tuple(compiler.compile(s) for s in statements)
    compiler.raise_for_unknown_names()
    used = tuple(k for k in params if k in compiler.used_params)
    return ParsedEquations(
        states=states,
        param_names=used,
        vector_field=_make_vector_field(states, used, compiled),
        rhs_text=tuple(s.rhs for s in statements),
    )


# -- reading the text -----------------------------------------------------------------------------
def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(line: int, text: str, message: str) -> EquationError:
    return EquationError(f"Line {line} (`{_short(text)}`): {message}")


def _read_statements(text: Any) -> list[_Statement]:
    if not isinstance(text, str):
        raise EquationError(
            f"`text` must be the equations as a str; got {type(text).__name__}. "
            'Example: "x\' = -k*x".'
        )
    if len(text) > MAX_TEXT:
        raise EquationError(
            f"The equation text is {len(text)} characters long; the limit is {MAX_TEXT}."
        )
    statements: list[_Statement] = []
    seen: dict[str, int] = {}
    for number, raw_line in enumerate(text.splitlines(), start=1):
        for piece in raw_line.split("#", 1)[0].split(";"):
            piece = piece.strip()
            if not piece:
                continue
            statement = _read_statement(number, piece)
            if statement.state in seen:
                raise _fail(
                    number,
                    piece,
                    f"state `{statement.state}` already has an equation on line "
                    f"{seen[statement.state]}; give each state exactly one equation.",
                )
            seen[statement.state] = number
            statements.append(statement)
    if not statements:
        raise EquationError(
            "The equation text has no equations. Write one per line, e.g. "
            "\"x' = a*x - b*x*y\\ny' = -c*y + d*x*y\"."
        )
    return statements


def _read_statement(line: int, text: str) -> _Statement:
    parts = _ASSIGN.split(text, maxsplit=1)
    if len(parts) < 2:
        raise _fail(
            line,
            text,
            "there is no `=`. Write each equation as x' = ..., dx/dt = ... "
            "or d(x)/dt = ... (one per line or separated by ;).",
        )
    lhs, rhs = (p.strip() for p in parts)
    state = _state_of(line, text, lhs)
    if not rhs:
        raise _fail(line, text, f"the right-hand side of `{lhs}` is empty.")
    return _Statement(line=line, text=text, state=state, rhs=rhs)


def _state_of(line: int, text: str, lhs: str) -> str:
    for pattern in _LHS_PATTERNS:
        match = pattern.match(lhs)
        if match:
            # Python reads identifiers in NFKC form; do the same so `ｘ'` and `x` agree.
            name = unicodedata.normalize("NFKC", match.group("name"))
            _check_new_name(name, "state", lambda m: _fail(line, text, m))
            return name
    if lhs.endswith("''"):
        raise _fail(
            line,
            text,
            f"`{lhs}` is a second derivative; odelab needs first-order equations. "
            "Introduce a velocity state: x' = v and v' = ...",
        )
    raise _fail(
        line,
        text,
        f"the left side `{lhs}` is not a derivative. Write x' = ..., dx/dt = ... or d(x)/dt = ...",
    )


def _check_new_name(name: str, kind: str, error: Callable[[str], EquationError]) -> None:
    """Reject a state or parameter name that is not a plain name or that hides a built-in one."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise error(f"{kind} name {name!r} is not a valid name; use names like 'x' or 'v_m'.")
    if name.startswith("__"):
        raise error(f"{kind} name `{name}` starts with a double underscore; rename it.")
    if name == TIME:
        raise error(f"`{TIME}` is the time variable and cannot be a {kind}; rename the {kind}.")
    if name in CONSTANTS:
        raise error(
            f"`{name}` is the constant {CONSTANTS[name]:.6g} and cannot be a {kind}; rename the "
            f"{kind} (e.g. '{name.upper()}' or '{name}_')."
        )
    if name in FUNCTIONS:
        raise error(
            f"`{name}` is the name of a function and cannot be a {kind}; rename the {kind} "
            f"(e.g. '{name}_')."
        )


def _check_param_names(params: Mapping[str, Any], states: tuple[str, ...]) -> None:
    def error(message: str) -> EquationError:
        return EquationError(f"`params`: {message}")

    for name in params:
        _check_new_name(name, "parameter", error)
        if name in states:
            raise error(
                f"`{name}` is both a parameter and a state (it has an equation); rename one."
            )


# -- turning a checked tree into a closure ---------------------------------------------------------
class _Compiler:
    """Checks right-hand sides against the grammar and builds closures env -> value."""

    def __init__(self, states: tuple[str, ...], params: tuple[str, ...]):
        self.states = states
        self.params = params
        self.used_params: set[str] = set()
        self.unknown: dict[str, int] = {}  # name -> first line it appears on
        self._statement: _Statement | None = None

    def compile(self, statement: _Statement) -> Compiled:
        self._statement = statement
        tree = self._parse(statement.rhs)
        return self._build(tree.body, depth=0)

    def _error(self, message: str) -> EquationError:
        assert self._statement is not None
        return _fail(self._statement.line, self._statement.text, message)

    def _parse(self, rhs: str) -> ast.Expression:
        source = rhs.replace("^", "**")  # ^ means power in math notation
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. invalid escapes; we report errors ourselves
                return ast.parse(source, mode="eval")
        except SyntaxError as err:
            if _ASSIGN.search(source):
                raise self._error(
                    "there is more than one `=`; write one equation per line (and no keyword "
                    "arguments such as f(x=1))."
                ) from None
            where = f" at column {err.offset}" if err.offset else ""
            raise self._error(
                f"`{_short(rhs)}` is not a valid expression ({err.msg}{where}). {ALLOWED}"
            ) from None
        except (ValueError, RecursionError, MemoryError, OverflowError):
            raise self._error(
                "the right-hand side is too long or nested too deeply to read."
            ) from None

    def _piece(self, node: ast.AST) -> str:
        assert self._statement is not None
        segment = ast.get_source_segment(self._statement.rhs.replace("^", "**"), node)
        return _short(segment or type(node).__name__, 60)

    def _refuse(self, what: str, node: ast.AST) -> EquationError:
        return self._error(
            f"`{self._piece(node)}` is not allowed: equations cannot contain {what}. {ALLOWED}"
        )

    def _build(self, node: ast.AST, depth: int) -> Compiled:
        if depth > MAX_DEPTH:
            raise self._error(
                f"the expression is nested more than {MAX_DEPTH} levels deep; simplify it."
            )
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.BinOp):
            return self._binary(node, depth)
        if isinstance(node, ast.UnaryOp):
            return self._unary(node, depth)
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        raise self._refuse(_REFUSED.get(type(node), f"{type(node).__name__} expressions"), node)

    def _constant(self, node: ast.Constant) -> Compiled:
        value = node.value
        if isinstance(value, bool) or value is None or value is Ellipsis:
            raise self._refuse(f"the constant {value!r}", node)
        if isinstance(value, (str, bytes)):
            raise self._refuse("strings", node)
        if isinstance(value, complex):
            raise self._refuse("complex numbers", node)
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise self._error(f"the number `{self._piece(node)}` is too large for a float.")
        return lambda env: number

    def _name(self, node: ast.Name) -> Compiled:
        name = node.id
        if name.startswith("__"):
            raise self._refuse("names with double underscores", node)
        if name in FUNCTIONS:
            raise self._error(
                f"`{name}` is a function; call it with an argument in parentheses, e.g. {name}(x)."
            )
        if name in CONSTANTS:
            value = CONSTANTS[name]
            return lambda env: value
        if name == TIME or name in self.states:
            return lambda env: env[name]
        if name in self.params:
            self.used_params.add(name)
            return lambda env: env[name]
        assert self._statement is not None
        self.unknown.setdefault(name, self._statement.line)
        return lambda env: env[name]

    def _binary(self, node: ast.BinOp, depth: int) -> Compiled:
        if isinstance(node.op, ast.Pow):
            return self._power(node.left, node.right, depth)
        op = _BINARY_OPS.get(type(node.op))
        if op is None:
            raise self._refuse(_REFUSED.get(type(node.op), "this operator"), node)
        left = self._build(node.left, depth + 1)
        right = self._build(node.right, depth + 1)
        return lambda env: op(left(env), right(env))

    def _power(self, base_node: ast.AST, exponent_node: ast.AST, depth: int) -> Compiled:
        base = self._build(base_node, depth + 1)
        exponent = self._build(exponent_node, depth + 1)
        k = _integer_literal(exponent_node)
        if k is not None and abs(k) <= MAX_INTEGER_POWER:
            # A Python int exponent makes JAX multiply repeatedly: exact for negative bases and
            # with a derivative that is finite at zero.
            return lambda env: jnp.power(base(env), k)
        return lambda env: jnp.power(base(env), exponent(env))

    def _unary(self, node: ast.UnaryOp, depth: int) -> Compiled:
        if isinstance(node.op, ast.USub):
            operand = self._build(node.operand, depth + 1)
            return lambda env: jnp.negative(operand(env))
        if isinstance(node.op, ast.UAdd):
            return self._build(node.operand, depth + 1)
        raise self._refuse(_REFUSED.get(type(node.op), "this operator"), node)

    def _call(self, node: ast.Call, depth: int) -> Compiled:
        if not isinstance(node.func, ast.Name):
            # Rejects os.system(...), (lambda: 1)(), f()() and the like with the inner reason.
            self._build(node.func, depth + 1)
            raise self._refuse("calls of anything but a function name", node)
        name = node.func.id
        if name.startswith("__"):
            raise self._refuse("names with double underscores", node.func)
        if name not in FUNCTIONS:
            if name in self.states or name in self.params or name in (TIME, *CONSTANTS):
                raise self._error(
                    f"`{name}` is not a function, so `{self._piece(node)}` is not allowed; "
                    f"write {name}*(...) to multiply."
                )
            raise self._error(
                f"unknown function `{name}`.{closest(name, FUNCTIONS)} Allowed functions: "
                f"{', '.join(FUNCTIONS)}."
            )
        if node.keywords:
            raise self._refuse("keyword arguments", node)
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self._refuse("starred arguments (*args)", arg)
        function = FUNCTIONS[name]
        count = len(node.args)
        too_many = function.max_args is not None and count > function.max_args
        if count < function.min_args or too_many:
            raise self._error(
                f"`{name}` takes {function.arity()}; `{self._piece(node)}` gives {count}."
            )
        if function.fn is jnp.power:
            return self._power(node.args[0], node.args[1], depth)
        args = tuple(self._build(arg, depth + 1) for arg in node.args)
        fn = function.fn
        return lambda env: fn(*(arg(env) for arg in args))

    def raise_for_unknown_names(self) -> None:
        if not self.unknown:
            return
        known = (*self.states, *self.params, TIME, *CONSTANTS)
        described = []
        for name, line in self.unknown.items():
            hint = closest(name, known).strip()
            hint = f"; {hint[0].lower()}{hint[1:]}" if hint else ""
            described.append(f"`{name}` (line {line}{hint})")
        example = ", ".join(f"{name!r}: 1.0" for name in self.unknown)
        given = ", ".join(self.params) if self.params else "none given"
        raise EquationError(
            f"Unknown name{'s' if len(described) > 1 else ''} {', '.join(described)}: not a "
            f"state ({', '.join(self.states)}), a parameter ({given}), t, pi or e. Add missing "
            f"parameters to params=, e.g. params={{{example}}}, or fix the spelling."
        )


def _integer_literal(node: ast.AST) -> int | None:
    """The value of an integer literal such as `2` or `-3`, else None."""
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return sign * node.value
    return None


def _make_vector_field(
    states: tuple[str, ...], params: tuple[str, ...], compiled: tuple[Compiled, ...]
) -> Callable[[Any, Any, Mapping[str, Any]], jax.Array]:
    n = len(states)

    def vector_field(t: Any, y: Any, p: Mapping[str, Any]) -> jax.Array:
        y = jnp.asarray(y)
        if y.ndim == 0 or y.shape[0] != n:
            raise EquationError(
                f"The equations have {n} states ({', '.join(states)}), so y needs shape "
                f"({n},); got {y.shape}."
            )
        env: Env = {TIME: t}
        for i, name in enumerate(states):
            env[name] = y[i]
        for name in params:
            try:
                env[name] = p[name]
            except (KeyError, TypeError):
                raise EquationError(
                    f"The equations use parameter `{name}`, but the parameters passed to the "
                    f"vector field ({type(p).__name__}) do not contain it. Pass a dict with "
                    f"{', '.join(params)}."
                ) from None
        values = [jnp.asarray(rhs(env)) for rhs in compiled]
        out = jnp.stack(jnp.broadcast_arrays(*values))
        if not jnp.issubdtype(out.dtype, jnp.floating):
            out = out.astype(jnp.result_type(float))
        return out

    vector_field.__name__ = "equations"
    return vector_field
