"""Derivatives of a user's objective `fun(params)` that calls `ol.solve` inside.

Each function lays `method=` (and `solver=`, `rtol=`, `atol=` when given) over every solve in
`fun` that does not name its own, checks the request against the method's declared capabilities
before anything is traced, picks the JAX route that the method supports, and caches the compiled
program per (fun, request, method, solver), so calling again with new values never recompiles.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import _context
from ._errors import InputError, MethodError, OdelabError, SolveError
from ._solve import DEFAULT_ATOL, DEFAULT_RTOL, _as_params, _check_tolerance, _traced
from .methods import METHODS, GradientMethod, method_object
from .methods._over_forward import ROUTE as OVER_FORWARD

# what each derivative function asks of the solves: (direction, order) for "auto" and checks
_REQUEST_ORDER = {
    "gradient": ("reverse", 1),
    "jacobian": ("reverse", 1),
    "jvp": ("forward", 1),
    "hvp": ("reverse", 2),  # forward-over-reverse unless a method only goes forward
    "hessian": ("reverse", 2),
}
_REQUEST_WORDS = {
    "gradient": "gradients",
    "jacobian": "Jacobians",
    "jvp": "Jacobian-vector products",
    "hvp": "Hessian-vector products",
    "hessian": "Hessians",
    "nested-gradient": "gradients of objectives that themselves take gradients through solves",
}
FEW_PARAMETERS = 3  # up to this many, forward mode beats an adjoint for a gradient
FEW_PARAMETERS_FOR_HESSIAN = 20  # up to this many, forward over forward beats n HVPs
HESSIAN_BATCH = 32  # Hessian rows (HVPs) vmapped together; more would hold more solves in memory


# --------------------------------------------------------------------------------------------
# resolving and checking the method
# --------------------------------------------------------------------------------------------
def _able(request: str) -> list[str]:
    return [n for n, cls in METHODS.items() if cls.capabilities.supports(request)]


def _resolve(method: Any, request: str, n_params: int) -> tuple[GradientMethod | None, str]:
    """(method object or None for "auto", effective request) after checking capabilities."""
    outer = _context.current()
    nested = outer.derivative is not None
    if method is None or (isinstance(method, str) and method.lower() == "auto"):
        method = outer.method if nested and outer.method is not None else "auto"
    obj = method_object(method)
    effective = "nested-gradient" if nested else request
    if obj == "auto":
        return None, effective
    if not obj.capabilities.supports(effective):
        able = ", ".join(repr(n) for n in _able(effective)) or "none yet"
        why = {
            "hvp": "it has no second-order route",
            "hessian": "it has no second-order route",
            "nested-gradient": "its backward pass cannot itself be differentiated",
        }.get(effective, "it does not support that direction")
        raise MethodError(
            f"`method={obj.name!r}` cannot give {_REQUEST_WORDS[effective]}: {why}. Methods "
            f"that can: {able}. Or leave method='auto' and odelab picks one."
        )
    return obj, effective


def _auto_route(request: str, n_params: int, nested: bool) -> tuple:
    """The route "auto" takes; the solves' `choose_method` reads it to pick their method.

    First derivatives: forward mode for few parameters, else reverse. Second order (not
    nested): reverse over forward sensitivities (HVP ≈ 1–5 gradients whatever the number of
    parameters), except HVPs of few parameters and dense Hessians of up to 20, where forward
    over forward is cheaper. Nested gradients (reverse over reverse) are a plain
    ("reverse", order) and get `direct`. Measured in benchmarks/bench_gradients.py.
    """
    direction, order = _REQUEST_ORDER[request]
    if nested:
        return "reverse", order + 1
    if request in ("gradient", "jacobian") and n_params <= FEW_PARAMETERS:
        return "forward", 1
    if (request == "hessian" and n_params <= FEW_PARAMETERS_FOR_HESSIAN) or (
            request == "hvp" and n_params <= FEW_PARAMETERS):
        return "forward", 2
    if order >= 2:
        return "reverse", order, OVER_FORWARD
    return direction, order


def _method_route(obj: GradientMethod, request: str) -> tuple[str, int]:
    """The direction a given method serves `request` in: its own when it has only one."""
    direction, order = _REQUEST_ORDER[request]
    caps = obj.capabilities
    if order >= 2:
        if any("over-reverse" in r for r in caps.second_order):
            return "reverse", order
        if OVER_FORWARD in caps.second_order:
            return "reverse", order, OVER_FORWARD
        return "forward", order
    prefers = getattr(obj, "prefers", None)
    if prefers == "forward" and caps.forward and request in ("gradient", "jacobian"):
        return "forward", order
    if direction == "reverse" and not caps.reverse:
        return "forward", order
    if direction == "forward" and not caps.forward:
        return "reverse", order
    return direction, order


def _n_params(diff: Any) -> int:
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(diff)))


# --------------------------------------------------------------------------------------------
# parameters: the differentiable part and the rest (activation functions, ints, ...)
# --------------------------------------------------------------------------------------------
def _split(params: Any) -> tuple[Any, Any]:
    if isinstance(params, bool) or params is None:
        raise InputError(f"`params` must be numbers or a pytree of float arrays; got {params!r}.")
    params = _as_params(params)
    diff, static = eqx.partition(params, eqx.is_inexact_array)
    if not jax.tree_util.tree_leaves(diff):
        raise InputError(
            "`params` has no floating-point values to differentiate. Pass the parameters as "
            "floats (e.g. dict(a=1.0)) or float arrays."
        )
    return diff, static


# --------------------------------------------------------------------------------------------
# the compiled programs, cached per function
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Key:
    kind: str
    method: Any
    solver: Any
    route: tuple[str, int]
    has_aux: bool
    fd: Any = None
    static: Any = None  # the non-differentiable part of params (activation functions, ...)


_CACHE: collections.OrderedDict = collections.OrderedDict()
_CACHE_SIZE = 256


def _identity(x: Any) -> Any:
    """A hashable stand-in for x: x itself when hashable, else its id (the cache keeps x alive)."""
    try:
        hash(x)
    except TypeError:
        return ("id", id(x))
    return x


def _fun_key(fun: Callable) -> tuple[Any, tuple]:
    """(key, objects to keep alive) naming what `fun` computes.

    A lambda written again (e.g. inside a loop or a slider callback) is a new object each time,
    but with the same code, closure contents and defaults it computes the same thing, so it
    shares the compiled program. Like `jax.jit`, the program bakes in the closure's values:
    mutate a captured array in place and call again, and the old value is used.
    """
    code = getattr(fun, "__code__", None)
    if code is None:
        return ("callable", _identity(fun)), (fun,)
    cells = tuple(c.cell_contents for c in (fun.__closure__ or ()))
    defaults = tuple(fun.__defaults__ or ()) + tuple(sorted((fun.__kwdefaults__ or {}).items()))
    # the globals the code reads (a loop variable at a notebook's top level, say) are part of
    # what it computes, exactly like its closure
    names = sorted(n for n in _global_names(code) if n in fun.__globals__)
    used = tuple(fun.__globals__[n] for n in names)
    key = (
        "function",
        code,
        id(fun.__globals__),
        tuple(_identity(c) for c in cells),
        tuple(_identity(d) for d in defaults),
        tuple(zip(names, (_identity(g) for g in used))),
        _identity(getattr(fun, "__self__", None)),
    )
    return key, (cells, defaults, used, getattr(fun, "__self__", None))


def _global_names(code: Any) -> set[str]:
    """Names `code` (and the functions defined inside it) may look up as globals."""
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _global_names(const)
    return names


def _static_key(static: Any) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(static)
    return treedef, tuple(_identity(x) for x in leaves)


def _compiled(fun: Callable, key: _Key, build: Callable[[], Callable]) -> Callable:
    fun_key, keep_alive = _fun_key(fun)
    full = (fun_key, key)
    if full in _CACHE:
        _CACHE.move_to_end(full)
        return _CACHE[full][0]
    program = build()
    _CACHE[full] = (program, keep_alive)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return program


def _objective(fun: Callable, static: Any, key: _Key, has_aux: bool):
    """fun on the differentiable part, inside the solve defaults, returning (value, aux)."""

    def call(diff, rtol, atol):
        params = eqx.combine(diff, static)
        # finite differences never differentiate the solves: they run (and nest) plainly
        method = None if key.fd is not None or key.method == "auto" else key.method
        route = None if key.fd is not None else key.route
        with (
            _context.solve_defaults(
                method=method, solver=key.solver, rtol=rtol, atol=atol, derivative=route
            ),
            _context.recording() as rec,
        ):
            out = fun(params)
        value, aux = out if has_aux else (out, None)
        value = _check_output(value)
        codes = list(rec.entries)
        return value, (aux, codes)

    return call


def _check_output(value: Any) -> jax.Array:
    if not isinstance(value, (jax.Array, float, int, np.ndarray, np.generic)):
        raise InputError(
            f"`fun` must return an array (or a float); it returned {type(value).__name__}. "
            "Return a scalar loss such as jnp.sum((sol.ys - data) ** 2), or pass has_aux=True "
            "to return (loss, extra)."
        )
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise InputError(f"`fun` returned {value.dtype} values; return floating-point values.")
    return value


def _tolerances(rtol: Any, atol: Any) -> tuple[Any, Any]:
    # Always arrays (the defaults when not given), so giving a tolerance or not, and any value,
    # share one compiled program. A solve that names its own tolerance still keeps it.
    outer = _context.current()
    rtol = rtol if rtol is not None else (outer.rtol if outer.rtol is not None else DEFAULT_RTOL)
    atol = atol if atol is not None else (outer.atol if outer.atol is not None else DEFAULT_ATOL)
    r = _traced(_check_tolerance("rtol", rtol))
    a = _traced(_check_tolerance("atol", atol))
    return r, a


def _raise_failures(codes: list) -> None:
    from ._solution import result_name

    for code, t in codes:
        if isinstance(code, jax.core.Tracer):  # nested in an outer transform: pass them up
            _context.record(code, t)
            continue
        if int(code) != 0:
            raise SolveError(
                f"A solve inside `fun` failed ({result_name(int(code))} at t={float(t):.6g}), so "
                "the derivative is meaningless. Run ol.solve on that problem alone to see why, "
                "then adjust solver, rtol or max_steps (or pass them here: solver='auto')."
            )


def _translate(err: Exception, method: Any) -> Exception:
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else ""  # the first line: later ones may quote whole programs
    name = getattr(method, "name", method)
    if "only defined for scalar-output functions" in text:
        return InputError(
            "`fun` must return a scalar for a gradient, HVP or Hessian. Sum or average the loss, "
            "or use ol.jacobian for vector outputs."
        )
    if (
        "while_loop or lax.fori_loop with dynamic start/stop" in text
        or "custom_vjp" in text
        or ("Unexpected tangent" in text)
    ):
        return MethodError(
            f"The derivative asked for differentiates a solve twice, which `method={name!r}` "
            "does not support. Use method='direct' (any transform) for nested or second-order "
            "derivatives, or leave method='auto'."
        )
    return err


def _run(
    kind: str,
    fun: Callable,
    params: Any,
    method: Any,
    solver: Any,
    rtol: Any,
    atol: Any,
    has_aux: bool,
    build: Callable[[Callable, _Key], Callable],
    *extra: Any,
):
    if not callable(fun):
        raise InputError(f"`fun` must be a function of the parameters; got {type(fun).__name__}.")
    diff, static = _split(params)
    n = _n_params(diff)
    obj, effective = _resolve(method, kind, n)
    nested = effective == "nested-gradient"
    route = _method_route(obj, kind) if obj is not None else _auto_route(kind, n, nested)
    if nested:
        route = ("reverse", _context.current().derivative[1] + _REQUEST_ORDER[kind][1])
    r, a = _tolerances(rtol, atol)
    key = _Key(
        kind,
        obj if obj is not None else "auto",
        solver,
        route,
        has_aux,
        fd=_fd_settings(obj),
        static=_static_key(static),
    )
    run = _compiled(fun, key, lambda: build(_objective(fun, static, key, has_aux), key))
    try:
        out = run(diff, r, a, *extra)
    except OdelabError:
        raise
    except Exception as err:
        raise _translate(err, obj or "auto") from err
    result, codes = out
    _raise_failures(codes)
    return result, static


def _fd_settings(obj: Any) -> Any:
    if obj is not None and obj.name == "finite-difference":
        return (obj.step, obj.richardson)
    return None


# --------------------------------------------------------------------------------------------
# finite differences of the whole objective
# --------------------------------------------------------------------------------------------
def _central(f: Callable, x: Any, direction: Any, h: Any, richardson: bool) -> Any:
    """The central difference of f along `direction` (Richardson-extrapolated: error O(h⁴))."""
    d = lambda hh: (f(x + hh * direction) - f(x - hh * direction)) / (2 * hh)
    return (4 * d(h / 2) - d(h)) / 3 if richardson else d(h)


def _fd_gradient(call: Callable, diff: Any, rtol: Any, atol: Any, step: Any, richardson: bool):
    """Central differences (Richardson-extrapolated) of a scalar objective, every direction
    vmapped."""
    flat, unravel = ravel_pytree(diff)
    noise = jnp.maximum(rtol if rtol is not None else DEFAULT_RTOL, jnp.finfo(flat.dtype).eps)
    # balance truncation (h^2, or h^4 with Richardson) against solver noise (noise / h)
    power = 1.0 / 5.0 if richardson else 1.0 / 3.0
    h = (step if step is not None else noise**power) * jnp.maximum(1.0, jnp.abs(flat))
    eye = jnp.eye(flat.shape[0], dtype=flat.dtype)

    def f(x):
        return call(unravel(x), rtol, atol)[0]

    def central(hh):
        plus = jax.vmap(lambda e: f(flat + hh * e))(eye)
        minus = jax.vmap(lambda e: f(flat - hh * e))(eye)
        return (plus - minus) / (2 * hh.reshape((-1,) + (1,) * (plus.ndim - 1)))

    d = central(h)
    if richardson:
        d = (4 * central(h / 2) - d) / 3
    value, (_, codes) = call(diff, rtol, atol)
    return value, jnp.moveaxis(d, 0, -1), unravel, codes


# --------------------------------------------------------------------------------------------
# the public functions
# --------------------------------------------------------------------------------------------
def _is_fd(key: _Key) -> bool:
    return key.fd is not None


def _grad_builder(call: Callable, key: _Key) -> Callable:
    def reverse(diff, rtol, atol):
        (value, (aux, codes)), g = jax.value_and_grad(call, has_aux=True)(diff, rtol, atol)
        return (value, aux, g), codes

    def forward(diff, rtol, atol):
        flat, unravel = ravel_pytree(diff)
        f = lambda x: call(unravel(x), rtol, atol)
        value, (aux, codes) = f(flat)
        g = jax.jacfwd(lambda x: f(x)[0])(flat)
        return (value, aux, unravel(g)), codes

    def finite(diff, rtol, atol):
        value, d, unravel, codes = _fd_gradient(call, diff, rtol, atol, *key.fd)
        return (value, None, unravel(d)), codes

    if _is_fd(key):
        return eqx.filter_jit(finite)
    return eqx.filter_jit(forward if key.route[0] == "forward" else reverse)


def value_and_gradient(
    fun: Callable,
    params: Any,
    method: Any = "auto",
    *,
    solver: Any = None,
    rtol: Any = None,
    atol: Any = None,
    has_aux: bool = False,
):
    """(fun(params), ∇fun(params)) with `method` applied to every solve inside `fun`.

    With has_aux=True, `fun` returns (loss, aux) and this returns ((loss, aux), gradient).
    The gradient has the structure of `params` (None where a leaf is not a float array).

        >>> loss, g = ol.value_and_gradient(loss_fn, sys.params, method="checkpoint")
    """
    (value, aux, g), static = _run(
        "gradient", fun, params, method, solver, rtol, atol, has_aux, _grad_builder
    )
    _scalar_required(value)
    return ((value, aux) if has_aux else value), _with_static(g, static)


def _scalar_required(value: Any) -> None:
    if np.ndim(value) != 0:
        raise InputError(
            f"`fun` returned shape {np.shape(value)}; a gradient needs a scalar. Sum or average "
            "the loss, or use ol.jacobian for vector outputs."
        )


def _with_static(tree: Any, static: Any) -> Any:
    return eqx.combine(tree, static) if static is not None else tree


def gradient(
    fun: Callable,
    params: Any,
    method: Any = "auto",
    *,
    solver: Any = None,
    rtol: Any = None,
    atol: Any = None,
    has_aux: bool = False,
):
    """∇fun(params): the gradient of a scalar objective that calls `ol.solve` inside.

    method: "auto", "checkpoint", "direct", "backsolve", "forward", "finite-difference", ... (see
    `ol.methods()`), applied to every solve in `fun` that does not name its own.

        >>> g = ol.gradient(lambda p: jnp.sum(ol.solve(sys, params=p).ys ** 2), sys.params)
    """
    value, g = value_and_gradient(
        fun, params, method, solver=solver, rtol=rtol, atol=atol, has_aux=has_aux
    )
    return (g, value[1]) if has_aux else g


def _jac_builder(call: Callable, key: _Key) -> Callable:
    def jac(diff, rtol, atol):
        f = lambda d: call(d, rtol, atol)
        value, (_, codes) = f(diff)
        transform = jax.jacfwd if key.route[0] == "forward" else jax.jacrev
        return (value, transform(lambda d: f(d)[0])(diff)), codes

    def finite(diff, rtol, atol):
        value, d, unravel, codes = _fd_gradient(call, diff, rtol, atol, *key.fd)
        # the structure of params, each leaf of shape fun's shape + the leaf's shape
        rows = jax.vmap(unravel)(jnp.reshape(d, (-1, d.shape[-1])))
        jac = jax.tree_util.tree_map(
            lambda leaf: jnp.reshape(leaf, np.shape(value) + leaf.shape[1:]), rows
        )
        return (value, jac), codes

    return eqx.filter_jit(finite if _is_fd(key) else jac)


def jacobian(
    fun: Callable,
    params: Any,
    method: Any = "auto",
    *,
    solver: Any = None,
    rtol: Any = None,
    atol: Any = None,
):
    """∂fun/∂params for an array-valued `fun` (leaves have shape fun's shape + leaf shape)."""
    (value, jac), static = _run(
        "jacobian", fun, params, method, solver, rtol, atol, False, _jac_builder
    )
    return jac


def _jvp_builder(call: Callable, key: _Key) -> Callable:
    def forward(diff, rtol, atol, tangent):
        f = lambda d: call(d, rtol, atol)
        value, tout, (_, codes) = jax.jvp(f, (diff,), (tangent,), has_aux=True)
        return (value, tout), codes

    def reverse(diff, rtol, atol, tangent):
        f = lambda d: call(d, rtol, atol)
        value, (_, codes) = f(diff)
        flat_t, _ = ravel_pytree(tangent)
        # J·v from the full Jacobian: one backward pass per output element
        jac = jax.jacrev(lambda d: f(d)[0])(diff)
        leaves = jax.tree_util.tree_leaves(jac)
        flat_j = jnp.concatenate([jnp.reshape(x, np.shape(value) + (-1,)) for x in leaves], axis=-1)
        return (value, flat_j @ flat_t), codes

    def finite(diff, rtol, atol, tangent):
        flat, unravel = ravel_pytree(diff)
        flat_t, _ = ravel_pytree(tangent)
        noise = jnp.maximum(rtol if rtol is not None else DEFAULT_RTOL, jnp.finfo(flat.dtype).eps)
        step, richardson = key.fd
        # no component may move by more than the step relative to its own size
        relative = jnp.max(jnp.abs(flat_t) / jnp.maximum(1.0, jnp.abs(flat)))
        h = (step if step is not None else noise ** (1 / 5 if richardson else 1 / 3)) / (
            jnp.maximum(relative, 1e-300)
        )
        f = lambda x: call(unravel(x), rtol, atol)[0]
        d = lambda hh: (f(flat + hh * flat_t) - f(flat - hh * flat_t)) / (2 * hh)
        out = (4 * d(h / 2) - d(h)) / 3 if richardson else d(h)
        value, (_, codes) = call(diff, rtol, atol)
        return (value, out), codes

    if _is_fd(key):
        return eqx.filter_jit(finite)
    return eqx.filter_jit(forward if key.route[0] == "forward" else reverse)


def _tangent_like(diff_params: Any, tangent: Any, argument: str) -> Any:
    t_diff, _ = eqx.partition(_as_params(tangent), eqx.is_inexact_array)
    if jax.tree_util.tree_structure(t_diff) != jax.tree_util.tree_structure(diff_params):
        raise InputError(
            f"`{argument}` must have the structure of `params` (the same keys and array shapes); "
            f"got {jax.tree_util.tree_structure(t_diff)}."
        )
    for a, b in zip(jax.tree_util.tree_leaves(t_diff), jax.tree_util.tree_leaves(diff_params)):
        if np.shape(a) != np.shape(b):
            raise InputError(
                f"`{argument}` has a leaf of shape {np.shape(a)} where params has {np.shape(b)}."
            )
    return jax.tree_util.tree_map(lambda a, b: jnp.asarray(a, dtype=b.dtype), t_diff, diff_params)


def jvp(
    fun: Callable,
    params: Any,
    tangent: Any,
    method: Any = "auto",
    *,
    solver: Any = None,
    rtol: Any = None,
    atol: Any = None,
):
    """(fun(params), J·tangent): the directional derivative of `fun` along `tangent`."""
    diff, _ = _split(params)
    t = _tangent_like(diff, tangent, "tangent")
    (value, tout), _ = _run("jvp", fun, params, method, solver, rtol, atol, False, _jvp_builder, t)
    return value, tout


def _value_with_codes(call: Callable, rtol: Any, atol: Any) -> Callable:
    """d -> (value, solve status codes): the codes ride along as auxiliary outputs."""

    def f(d):
        value, (_, codes) = call(d, rtol, atol)
        return value, codes

    return f


def _over_forward(key: _Key) -> bool:
    """Whether the route is reverse over forward sensitivities (see methods/_over_forward.py)."""
    return OVER_FORWARD in key.route[2:]


def _hvp_over_forward(f: Callable, diff: Any, vector: Any) -> tuple[Any, list]:
    """(H·vector, solve codes) as ∇(∇f·vector): reverse mode over forward sensitivities.

    The solves' step sizes follow the sensitivities too, so their status may depend on the
    direction; it comes back as it is (batched under vmap, see `_worst`).
    """

    def directional(d):
        _, derivative, codes = jax.jvp(f, (d,), (vector,), has_aux=True)
        return derivative, codes

    return jax.grad(directional, has_aux=True)(diff)


def _worst(codes: list) -> list:
    """Batched solve statuses (one per direction of a vmap) reduced to the worst of each."""
    return [(jnp.max(code), jnp.min(t)) for code, t in codes]


def _hvp_over_reverse(f: Callable, diff: Any, vector: Any) -> tuple[Any, list]:
    """(H·vector, solve codes) as the jvp of the gradient: forward mode over reverse."""
    _, hv, codes = jax.jvp(jax.grad(f, has_aux=True), (diff,), (vector,), has_aux=True)
    return hv, codes


def _hvp_builder(call: Callable, key: _Key) -> Callable:
    def forward_over_forward(diff, rtol, atol, vector):
        f = _value_with_codes(call, rtol, atol)

        def g(d):  # the gradient as a forward-mode Jacobian
            flat, unravel = ravel_pytree(d)
            jac, codes = jax.jacfwd(lambda x: f(unravel(x)), has_aux=True)(flat)
            return unravel(jac), codes

        _, hv, codes = jax.jvp(g, (diff,), (vector,), has_aux=True)
        return hv, codes

    def forward_over_reverse(diff, rtol, atol, vector):
        return _hvp_over_reverse(_value_with_codes(call, rtol, atol), diff, vector)

    def reverse_over_forward(diff, rtol, atol, vector):
        return _hvp_over_forward(_value_with_codes(call, rtol, atol), diff, vector)

    def finite(diff, rtol, atol, vector):
        flat, unravel = ravel_pytree(diff)
        flat_v, _ = ravel_pytree(vector)
        grad = lambda x: _fd_gradient(call, unravel(x), rtol, atol, *key.fd)[1]
        noise = jnp.maximum(rtol if rtol is not None else DEFAULT_RTOL, jnp.finfo(flat.dtype).eps)
        h = (
            noise ** (1 / 5)
            * jnp.maximum(1.0, jnp.linalg.norm(flat))
            / jnp.maximum(jnp.linalg.norm(flat_v), 1e-300)
        )
        hv = _central(lambda x: grad(x), flat, flat_v, h, key.fd[1])
        return unravel(hv), []

    if _is_fd(key):
        return eqx.filter_jit(finite)
    if _over_forward(key):
        return eqx.filter_jit(reverse_over_forward)
    if key.route[0] == "forward":
        return eqx.filter_jit(forward_over_forward)
    return eqx.filter_jit(forward_over_reverse)


def hvp(
    fun: Callable,
    params: Any,
    vector: Any,
    method: Any = "auto",
    *,
    solver: Any = None,
    rtol: Any = None,
    atol: Any = None,
):
    """H·vector: the Hessian of scalar `fun` at `params` times `vector`, without forming H."""
    diff, _ = _split(params)
    v = _tangent_like(diff, vector, "vector")
    hv, static = _run("hvp", fun, params, method, solver, rtol, atol, False, _hvp_builder, v)
    return hv


def _hessian_builder(call: Callable, key: _Key) -> Callable:
    def hess(diff, rtol, atol):
        flat, unravel = ravel_pytree(diff)
        f = lambda x: _value_with_codes(call, rtol, atol)(unravel(x))
        if key.route[0] == "forward":  # forward over forward: for few parameters
            return jax.jacfwd(jax.jacfwd(f, has_aux=True), has_aux=True)(flat)
        # each row an HVP, in vmapped batches: memory grows with the batch, not with n
        hvp_route = _hvp_over_forward if _over_forward(key) else _hvp_over_reverse
        eye = jnp.eye(flat.shape[0], dtype=flat.dtype)
        rows, codes = jax.lax.map(lambda e: hvp_route(f, flat, e), eye,
                                  batch_size=min(flat.shape[0], HESSIAN_BATCH))
        return 0.5 * (rows + rows.T), _worst(codes)

    def finite(diff, rtol, atol):
        flat, unravel = ravel_pytree(diff)
        grad = lambda x: _fd_gradient(call, unravel(x), rtol, atol, *key.fd)[1]
        noise = jnp.maximum(rtol if rtol is not None else DEFAULT_RTOL, jnp.finfo(flat.dtype).eps)
        h = noise ** (1 / 5) * jnp.maximum(1.0, jnp.abs(flat))
        eye = jnp.eye(flat.shape[0], dtype=flat.dtype)
        rows = jax.vmap(lambda e, hh: _central(grad, flat, e, hh, key.fd[1]))(eye, h)
        return 0.5 * (rows + rows.T), []

    return eqx.filter_jit(finite if _is_fd(key) else hess)


def hessian(
    fun: Callable,
    params: Any,
    method: Any = "auto",
    *,
    solver: Any = None,
    rtol: Any = None,
    atol: Any = None,
) -> jax.Array:
    """The dense Hessian of scalar `fun`, as an (n, n) array over the flattened parameters.

    The order of the flattened parameters is that of `jax.flatten_util.ravel_pytree(params)`
    (dict keys sorted); `ol.flat_names(params)` gives their names.
    """
    h, _ = _run("hessian", fun, params, method, solver, rtol, atol, False, _hessian_builder)
    return h


def flat_names(params: Any) -> list[str]:
    """Names of the flattened parameters, in the order Hessians and spectra use."""
    diff, _ = _split(params)
    names = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(diff):
        base = jax.tree_util.keystr(path).replace("['", "").replace("']", ".").rstrip(".")
        base = base.lstrip(".") or "p"
        if np.ndim(leaf) == 0:
            names.append(base)
        else:
            names.extend(f"{base}[{i}]" for i in range(int(np.size(leaf))))
    return names
