"""The derivative programs: one builder per request and route, and the one cache that holds them.

`objective(fun, static, plan)` wraps the user's function: it runs `fun` inside the solve
defaults the plan lays over its solves (method, solver, tolerances, the derivative route) and
records the status of every solve traced inside. `build(plan, call)` turns that into the jitted
program for the plan's request and route; `compiled(owner, key, build)` caches programs per
(what computes, plan), so calling again with new values, or a lambda written again, never
recompiles. `ol.fit` and the explorer embed the same builders in programs of their own.
"""

from __future__ import annotations

import collections
import inspect
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._errors import InputError, SolveError
from .._inputs import check_tolerance, traced
from ..solve import defaults
from ..solve.settings import DEFAULT_ATOL, DEFAULT_RTOL
from ..solve.solution import FIELD_NOT_FINITE, result_name
from . import finite_difference as fd
from .plan import SCALAR_REQUESTS, Plan, identity

HESSIAN_BATCH = 32  # Hessian rows (HVPs) vmapped together; more would hold more solves in memory
CACHE_SIZE = 256


# --------------------------------------------------------------------------------------------
# the one cache of compiled programs
# --------------------------------------------------------------------------------------------
_CACHE: collections.OrderedDict = collections.OrderedDict()
_LOCK = threading.Lock()


def function_key(fun: Callable) -> tuple[Any, tuple]:
    """(key, objects to keep alive) naming what `fun` computes.

    A lambda written again (e.g. inside a loop or a slider callback) is a new object each time,
    but with the same code, closure contents and defaults it computes the same thing, so it
    shares the compiled program. Like `jax.jit`, the program bakes in the closure's values:
    mutate a captured array in place and call again, and the old value is used.
    """
    code = getattr(fun, "__code__", None)
    if code is None:
        return ("callable", identity(fun)), (fun,)
    cells = tuple(c.cell_contents for c in (fun.__closure__ or ()))
    defaults_ = tuple(fun.__defaults__ or ()) + tuple(sorted((fun.__kwdefaults__ or {}).items()))
    # the globals the code reads (a loop variable at a notebook's top level, say) are part of
    # what it computes, exactly like its closure
    names = sorted(n for n in _global_names(code) if n in fun.__globals__)
    used = tuple(fun.__globals__[n] for n in names)
    key = (
        "function",
        code,
        id(fun.__globals__),
        tuple(identity(c) for c in cells),
        tuple(identity(d) for d in defaults_),
        tuple(zip(names, (identity(g) for g in used))),
        identity(getattr(fun, "__self__", None)),
    )
    return key, (cells, defaults_, used, getattr(fun, "__self__", None))


def _global_names(code: Any) -> set[str]:
    """Names `code` (and the functions defined inside it) may look up as globals."""
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _global_names(const)
    return names


def compiled(owner: Any, key: Hashable, build: Callable[[], Callable]) -> Callable:
    """The program for (`owner`, `key`), built once by `build()` and kept (least recently used
    programs are dropped beyond CACHE_SIZE). `owner` is a function (keyed by what it computes,
    see `function_key`) or any hashable naming who owns the program."""
    if callable(owner):
        owner_key, keep_alive = function_key(owner)
    else:
        owner_key, keep_alive = ("owner", identity(owner)), (owner,)
    full = (owner_key, key)
    with _LOCK:
        if full in _CACHE:
            _CACHE.move_to_end(full)
            return _CACHE[full][0]
    program = build()
    with _LOCK:
        _CACHE[full] = (program, keep_alive)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return program


def forget(owner: Any) -> int:
    """Drop every cached program owned by `owner` (e.g. an explorer being closed)."""
    owner_key = function_key(owner)[0] if callable(owner) else ("owner", identity(owner))
    with _LOCK:
        gone = [k for k in _CACHE if k[0] == owner_key]
        for k in gone:
            del _CACHE[k]
    return len(gone)


# --------------------------------------------------------------------------------------------
# the user's function inside the plan's solve defaults
# --------------------------------------------------------------------------------------------
def objective(fun: Callable, static: Any, plan: Plan) -> Callable:
    """call(diff, rtol, atol) -> (value, (aux, solve status codes)) for `fun` under `plan`."""

    def call(diff, rtol, atol):
        params = eqx.combine(diff, static)
        with (
            defaults.solve_defaults(method=plan.solve_method, solver=plan.solver, rtol=rtol,
                                    atol=atol, derivative=plan.solve_route,
                                    max_steps=plan.max_steps,
                                    memory_budget=plan.memory_budget),
            defaults.recording() as rec,
        ):
            out = fun(params)
        value, aux = _split_aux(out, plan.has_aux)
        value = _check_output(value, plan.request)
        return value, (aux, list(rec.entries))

    return call


def _split_aux(out: Any, has_aux: bool) -> tuple[Any, Any]:
    if not has_aux:
        return out, None
    if not isinstance(out, tuple) or len(out) != 2:
        what = (f"an array of shape {tuple(np.shape(out))}" if hasattr(out, "shape")
                else type(out).__name__)
        raise InputError(
            f"`has_aux=True`: `fun` must return a pair (loss, aux); it returned {what}. Return "
            "(loss, extra), or drop has_aux for a fun that returns the loss alone."
        )
    return out


def _check_output(value: Any, request: str) -> jax.Array:
    if not isinstance(value, (jax.Array, float, int, np.ndarray, np.generic)):
        raise InputError(
            f"`fun` must return an array (or a float); it returned {type(value).__name__}. "
            "Return a scalar loss such as jnp.sum((sol.ys - data) ** 2), or pass has_aux=True "
            "to return (loss, extra)."
        )
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise InputError(f"`fun` returned {value.dtype} values; return floating-point values.")
    if request in SCALAR_REQUESTS and value.ndim != 0:
        raise InputError(
            f"`fun` returned shape {value.shape}; a {request} needs a scalar. Sum or average "
            "the loss, or use ol.jacobian for vector outputs."
        )
    return value


def tolerances(rtol: Any, atol: Any) -> tuple[Any, Any]:
    """The derivative call's tolerances as arrays: given, else the enclosing call's, else odelab's.

    Always arrays, so giving a tolerance or not, and any value, share one compiled program. A
    solve that names its own tolerance still keeps it.
    """
    outer = defaults.current()
    rtol = rtol if rtol is not None else (outer.rtol if outer.rtol is not None else DEFAULT_RTOL)
    atol = atol if atol is not None else (outer.atol if outer.atol is not None else DEFAULT_ATOL)
    return traced(check_tolerance("rtol", rtol)), traced(check_tolerance("atol", atol))


def raise_failures(codes: list) -> None:
    """SolveError if a solve inside `fun` failed; traced codes pass up to an outer recorder."""
    for code, t in codes:
        if isinstance(code, jax.core.Tracer):  # nested in an outer transform: pass them up
            defaults.record(code, t)
            continue
        if int(code) == FIELD_NOT_FINITE:
            raise SolveError(
                f"A solve inside `fun` starts where the vector field is not finite (NaN or inf "
                f"at t={float(t):.6g}, at y0), so the derivative is meaningless. Check y0 and the "
                "parameter values (a square root or logarithm of a negative number, a division "
                "by zero, an overflowing power); ol.solve on that problem alone names the state "
                "and the component.")
        if int(code) != 0:
            error = SolveError(
                f"A solve inside `fun` failed ({result_name(int(code))} at t={float(t):.6g}), so "
                "the derivative is meaningless. Run ol.solve on that problem alone to see why, "
                "then adjust solver, rtol or max_steps (or pass them here: solver='auto', "
                "max_steps=100000)."
            )
            error.result = result_name(int(code))  # what failed, for callers that retry
            raise error


# --------------------------------------------------------------------------------------------
# the builders, one per request (each picks its route)
# --------------------------------------------------------------------------------------------
def _with_codes(call: Callable, rtol: Any, atol: Any) -> Callable:
    """d -> (value, solve status codes): the codes ride along as auxiliary outputs."""

    def f(d):
        value, (_, codes) = call(d, rtol, atol)
        return value, codes

    return f


def worst(codes: list) -> list:
    """Batched solve statuses (one per direction of a vmap) reduced to the worst of each."""
    return [(jnp.max(code), jnp.min(t)) for code, t in codes]


def hvp_over_forward(f: Callable, diff: Any, vector: Any) -> tuple[Any, list]:
    """(H·vector, codes) as ∇(∇f·vector): reverse mode over forward sensitivities.

    The solves' step sizes follow the sensitivities too, so their status may depend on the
    direction; it comes back as it is (batched under vmap, see `worst`).
    """

    def directional(d):
        _, derivative, codes = jax.jvp(f, (d,), (vector,), has_aux=True)
        return derivative, codes

    return jax.grad(directional, has_aux=True)(diff)


def hvp_over_reverse(f: Callable, diff: Any, vector: Any) -> tuple[Any, list]:
    """(H·vector, codes) as the jvp of the gradient: forward mode over reverse."""
    _, hv, codes = jax.jvp(jax.grad(f, has_aux=True), (diff,), (vector,), has_aux=True)
    return hv, codes


def gradient_function(plan: Plan, call: Callable) -> Callable:
    """(diff, rtol, atol) -> ((value, aux, gradient), codes), not jitted (for embedding)."""

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
        value, aux, d, unravel, codes = fd.gradient(call, diff, rtol, atol,
                                                     *plan.finite_difference)
        return (value, aux, unravel(d)), codes

    if plan.finite_difference is not None:
        return finite
    return forward if plan.forward else reverse


def _jacobian(plan: Plan, call: Callable) -> Callable:
    def jac(diff, rtol, atol):
        f = lambda d: call(d, rtol, atol)
        value, (_, codes) = f(diff)
        transform = jax.jacfwd if plan.forward else jax.jacrev
        return (value, transform(lambda d: f(d)[0])(diff)), codes

    def finite(diff, rtol, atol):
        value, _, d, unravel, codes = fd.gradient(call, diff, rtol, atol,
                                                   *plan.finite_difference)
        # the structure of params, each leaf of shape fun's shape + the leaf's shape
        rows = jax.vmap(unravel)(jnp.reshape(d, (-1, d.shape[-1])))
        jac = jax.tree_util.tree_map(
            lambda leaf: jnp.reshape(leaf, np.shape(value) + leaf.shape[1:]), rows
        )
        return (value, jac), codes

    return finite if plan.finite_difference is not None else jac


def _jvp(plan: Plan, call: Callable) -> Callable:
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
        value, out, codes = fd.jvp(call, diff, rtol, atol, tangent, *plan.finite_difference)
        return (value, out), codes

    if plan.finite_difference is not None:
        return finite
    return forward if plan.forward else reverse


def _hvp(plan: Plan, call: Callable) -> Callable:
    def forward_over_forward(diff, rtol, atol, vector):
        f = _with_codes(call, rtol, atol)

        def g(d):  # the gradient as a forward-mode Jacobian
            flat, unravel = ravel_pytree(d)
            jac, codes = jax.jacfwd(lambda x: f(unravel(x)), has_aux=True)(flat)
            return unravel(jac), codes

        _, hv, codes = jax.jvp(g, (diff,), (vector,), has_aux=True)
        return hv, codes

    def forward_over_reverse(diff, rtol, atol, vector):
        return hvp_over_reverse(_with_codes(call, rtol, atol), diff, vector)

    def reverse_over_forward(diff, rtol, atol, vector):
        return hvp_over_forward(_with_codes(call, rtol, atol), diff, vector)

    def finite(diff, rtol, atol, vector):
        return fd.hvp(call, diff, rtol, atol, vector, *plan.finite_difference), []

    if plan.finite_difference is not None:
        return finite
    if plan.over_forward:
        return reverse_over_forward
    return forward_over_forward if plan.forward else forward_over_reverse


def _hessian(plan: Plan, call: Callable) -> Callable:
    def hess(diff, rtol, atol):
        flat, unravel = ravel_pytree(diff)
        f = lambda x: _with_codes(call, rtol, atol)(unravel(x))
        if plan.forward:  # forward over forward: for few parameters
            return jax.jacfwd(jax.jacfwd(f, has_aux=True), has_aux=True)(flat)
        # each row an HVP, in vmapped batches: memory grows with the batch, not with n
        row = hvp_over_forward if plan.over_forward else hvp_over_reverse
        eye = jnp.eye(flat.shape[0], dtype=flat.dtype)
        rows, codes = jax.lax.map(lambda e: row(f, flat, e), eye,
                                  batch_size=min(flat.shape[0], HESSIAN_BATCH))
        return 0.5 * (rows + rows.T), worst(codes)

    def finite(diff, rtol, atol):
        return fd.hessian(call, diff, rtol, atol, *plan.finite_difference), []

    return finite if plan.finite_difference is not None else hess


_BUILDERS = {
    "gradient": gradient_function,
    "jacobian": _jacobian,
    "jvp": _jvp,
    "hvp": _hvp,
    "hessian": _hessian,
}


def build(plan: Plan, call: Callable) -> Callable:
    """The jitted program for `plan`: (diff, rtol, atol, *extra) -> (result, solve codes)."""
    return eqx.filter_jit(_BUILDERS[plan.request](plan, call))


class Target:
    """The user's function as a compiled program calls it when it traces, held weakly.

    JAX keeps traced programs (and what they were traced from) in caches of its own; holding
    `fun` weakly there lets a dropped function, and what it closes over (an explorer's
    objective, a system, data), go. `run` sets the function of the call in progress.
    """

    def __init__(self, fun: Callable):
        self.set(fun)

    def set(self, fun: Callable) -> None:
        self._strong: Callable | None = None
        try:
            self._ref: Any = (weakref.WeakMethod(fun) if inspect.ismethod(fun)
                              else weakref.ref(fun))
        except TypeError:  # not weakly referable: held
            self._ref, self._strong = None, fun

    def __call__(self, *args: Any) -> Any:
        fun = self._strong if self._ref is None else self._ref()
        if fun is None:
            raise InputError("the function this derivative program was built for is gone; "
                             "call the derivative function again with it.")
        return fun(*args)


class Program:
    """A cached derivative program and the `Target` it calls when it traces."""

    def __init__(self, jitted: Callable, target: Target):
        self.jitted, self.target = jitted, target

    def __call__(self, *args: Any) -> Any:
        return self.jitted(*args)


def run(plan: Plan, fun: Callable, diff: Any, static: Any, rtol: Any, atol: Any,
        *extra: Any) -> Any:
    """Compile (once) and run `plan` on `fun`; SolveError when a solve inside failed."""
    if not callable(fun):
        raise InputError(f"`fun` must be a function of the parameters; got {type(fun).__name__}.")
    r, a = tolerances(rtol, atol)

    def make() -> Program:
        target = Target(fun)
        return Program(build(plan, objective(target, static, plan)), target)

    program = compiled(fun, plan, make)
    program.target.set(fun)  # a lambda written again computes the same: it traces, if need be
    result, codes = program(diff, r, a, *extra)
    raise_failures(codes)
    return result
