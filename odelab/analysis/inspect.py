"""`inspect_adjoint`: compare a hand-written discrete adjoint with autodiff, step by step.

For a time-stepping loop x[k+1] = step(x[k], k), k = 0..n_steps-1, and a loss of the whole
trajectory L(x[0], ..., x[n_steps]), the discrete adjoint is λ[k] = dL/dx[k], the total
derivative through every later step:

    λ[n] = ∂L/∂x[n],    λ[k] = ∂L/∂x[k] + (∂step/∂x(x[k], k))ᵀ λ[k+1].

odelab computes it with `jax.vjp` of each step and reports the first step (in the backward order
an adjoint is computed) where the user's adjoint departs from it. The state may be a pytree (a
dict of fields); with `params=`, the step is step(x, k, params) and the parameter gradient

    dL/dparams = ∂L/∂params + Σ_k (∂step/∂params(x[k], k))ᵀ λ[k+1]

that a hand-written adjoint accumulates is compared too.

    >>> report = ol.inspect_adjoint(step, x0, 100, loss, my_adjoint)
    >>> report.first_divergence      # None when they agree
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import InputError
from ._html import badge, finite_or_none, number, table, text_table


@dataclasses.dataclass
class AdjointInspection:
    """The step-by-step comparison of a user's adjoint with the autodiff one.

    errors[k] = ‖λ_user[k] − λ_ad[k]‖ / max(‖λ_ad[k]‖, floor) for k = 0..n_steps (a pytree state
    counts as one vector: all its leaves at step k).
    first_divergence: the largest k with errors[k] > rtol (the first wrong one in the backward
    order the adjoint is computed in), or None. If λ[k+1] is right and λ[k] is wrong, the bug is
    in the backward step from k+1 to k: the transpose of step k, or the loss's direct term at k.
    autodiff, user: λ[0..n_steps] stacked like the trajectory (an array, or x0's pytree).
    param_gradient: dL/dparams by autodiff when `params` was given (else None).
    param_errors: {"params['a']": relative error of the user's dL/dparams} per leaf, when the
    user gave one (else empty).
    """

    n_steps: int
    rtol: float
    errors: np.ndarray
    norms: np.ndarray  # ‖λ_ad[k]‖
    first_divergence: int | None
    autodiff: Any = dataclasses.field(repr=False)
    user: Any = dataclasses.field(repr=False)
    param_gradient: Any = dataclasses.field(default=None, repr=False)
    param_errors: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def wrong_params(self) -> list[str]:
        """The parameters whose user gradient departs from autodiff's by more than rtol."""
        return [name for name, e in self.param_errors.items() if not e <= self.rtol]

    @property
    def ok(self) -> bool:
        return self.first_divergence is None and not self.wrong_params

    @property
    def verdict(self) -> str:
        return "agrees" if self.ok else "diverges"

    def _states_summary(self) -> str:
        if self.first_divergence is None:
            return (f"The adjoint agrees with autodiff at every step 0..{self.n_steps} "
                    f"(largest relative error {float(np.max(self.errors)):.2g} ≤ {self.rtol:g}).")
        k = self.first_divergence
        later = ("" if k == self.n_steps else
                 f" It agrees from step {self.n_steps} down to {k + 1}, so the error enters in "
                 f"the backward step from {k + 1} to {k}: the transpose of step {k} "
                 f"(x[{k}] → x[{k + 1}]) or the loss's direct term at x[{k}].")
        if k == self.n_steps:
            later = f" The last adjoint λ[{k}] = ∂L/∂x[{k}] is already wrong: check the loss term."
        return (f"The adjoint first diverges at step {k} (relative error "
                f"{float(self.errors[k]):.2g} > {self.rtol:g}).{later}")

    def _params_summary(self) -> str:
        if self.param_gradient is None:
            return ""
        if not self.param_errors:
            return (" The parameter gradient was not compared (no dL/dparams given); autodiff's "
                    "is in `.param_gradient`.")
        if not self.wrong_params:
            return (f" The parameter gradient dL/dparams agrees too (largest relative error "
                    f"{max(self.param_errors.values()):.2g}).")
        wrong = ", ".join(f"{name} (relative error {self.param_errors[name]:.2g})"
                          for name in self.wrong_params)
        if self.first_divergence is not None:
            return (f" The parameter gradient is off as well, for {wrong}; it is built from λ, "
                    "so fix the state adjoint first.")
        return (f" The parameter gradient dL/dparams is wrong for {wrong} while every state "
                "adjoint agrees: the error is in the parameter terms, Σ_k (∂step/∂params at "
                "x[k])ᵀ λ[k+1], or the loss's direct term ∂L/∂params.")

    def summary(self) -> str:
        return self._states_summary() + self._params_summary()

    def _window(self) -> list[int]:
        k = self.n_steps if self.first_divergence is None else self.first_divergence
        return list(range(min(self.n_steps, k + 2), max(-1, k - 3), -1))

    def _param_rows(self, mark: Callable[[bool], str]) -> list[list[str]]:
        norms = {"params" + jax.tree_util.keystr(path): float(np.linalg.norm(np.ravel(leaf)))
                 for path, leaf in jax.tree_util.tree_flatten_with_path(self.param_gradient)[0]}
        return [[name, number(norms[name]), number(e), mark(e <= self.rtol)]
                for name, e in self.param_errors.items()]

    def __str__(self) -> str:
        mark = lambda good: "ok" if good else "WRONG"
        rows = [[str(k), number(float(self.norms[k])), number(float(self.errors[k])),
                 mark(self.errors[k] <= self.rtol)] for k in self._window()]
        lines = [f"Adjoint inspection ({self.n_steps} steps): {self.verdict.upper()}",
                 self.summary(), "", text_table(["step", "‖λ autodiff‖", "rel. error", ""], rows)]
        if self.param_errors:
            lines += ["", text_table(["parameter", "‖dL/dθ autodiff‖", "rel. error", ""],
                                     self._param_rows(mark))]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<AdjointInspection {self.verdict}: first_divergence={self.first_divergence}, "
                f"n_steps={self.n_steps}>")

    def _repr_html_(self) -> str:
        mark = lambda good: badge("agrees" if good else "diverges")
        rows = [[str(k), number(float(self.norms[k])), number(float(self.errors[k])),
                 mark(self.errors[k] <= self.rtol)] for k in self._window()]
        params = (table(["parameter", "‖dL/dθ autodiff‖", "relative error", ""],
                        self._param_rows(mark), raw=True) if self.param_errors else "")
        return (f"<div><b>Adjoint inspection</b> ({self.n_steps} steps) {badge(self.verdict)}"
                f"<p>{html.escape(self.summary())}</p>"
                f"{table(['step', '‖λ autodiff‖', 'relative error', ''], rows, raw=True)}"
                f"{params}</div>")

    def to_dict(self) -> dict[str, Any]:
        return finite_or_none({
            "n_steps": self.n_steps, "rtol": self.rtol, "ok": self.ok,
            "first_divergence": self.first_divergence,
            "errors": [float(e) for e in self.errors], "norms": [float(x) for x in self.norms],
            "param_errors": dict(self.param_errors), "wrong_params": self.wrong_params,
            "summary": self.summary(),
        })


def _trajectory(step: Callable, x0: Any, n_steps: int, params: Any, with_params: bool) -> Any:
    def body(x, k):
        nxt = step(x, k, params) if with_params else step(x, k)
        return nxt, nxt

    _, xs = jax.lax.scan(body, x0, jnp.arange(n_steps))
    return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), x0, xs)


def _autodiff_adjoint(step: Callable, xs: Any, loss: Callable, params: Any,
                      with_params: bool) -> tuple[Any, Any]:
    """λ[0..n] (a pytree of stacked leaves, like xs) and dL/dparams (like params)."""
    full_loss = (lambda ys, p: loss(ys, p)) if with_params else (lambda ys, p: loss(ys))
    direct, direct_params = jax.grad(full_loss, argnums=(0, 1))(xs, params)  # partials
    n = jax.tree_util.tree_leaves(xs)[0].shape[0] - 1
    at = lambda tree, k: jax.tree_util.tree_map(lambda leaf: leaf[k], tree)

    def back(carry, k):
        lam_next, grad_params = carry
        one_step = (lambda x, p: step(x, k, p)) if with_params else (lambda x, p: step(x, k))
        _, pullback = jax.vjp(one_step, at(xs, k), params)
        through_x, through_p = pullback(lam_next)
        lam = jax.tree_util.tree_map(jnp.add, at(direct, k), through_x)
        return (lam, jax.tree_util.tree_map(jnp.add, grad_params, through_p)), lam

    (_, grad_params), lams = jax.lax.scan(back, (at(direct, n), direct_params),
                                          jnp.arange(n - 1, -1, -1))
    lams = jax.tree_util.tree_map(lambda ls, last: jnp.concatenate([ls[::-1], last[None]]),
                                  lams, at(direct, n))
    return lams, grad_params


def _floats(tree: Any, argument: str) -> Any:
    """`tree` with every leaf a float array; an `InputError` naming the leaf otherwise."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    out = []
    for path, leaf in leaves:
        name = argument + jax.tree_util.keystr(path)
        try:
            value = np.asarray(leaf, dtype=float)
        except (TypeError, ValueError):
            raise InputError(f"`{name}` is not an array of numbers (got {type(leaf).__name__} "
                             f"{leaf!r:.60}).") from None
        if not np.all(np.isfinite(value)):
            raise InputError(f"`{name}` is not finite; give finite numbers.")
        out.append(value)
    if not out:
        raise InputError(f"`{argument}` holds no arrays; give an array or a pytree of arrays.")
    return jax.tree_util.tree_unflatten(treedef, out)


def _as_array(value: list | tuple, argument: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"`{argument}` is a list that is not an array of numbers of one "
                         "shape; give an array (or a pytree of arrays).") from None


def _shapes(tree: Any) -> str:
    return str(jax.tree_util.tree_map(lambda leaf: tuple(np.shape(leaf)), tree))


def _check_step(step: Callable, x0: Any, params: Any, with_params: bool) -> None:
    args = (x0, 0, params) if with_params else (x0, 0)
    try:
        out = jax.eval_shape(step, *args)
    except TypeError as error:
        form = "step(x, k, params)" if with_params else "step(x, k)"
        raise InputError(f"`step` could not be called as {form} with x shaped like x0 "
                         f"({error}).") from error
    want = jax.tree_util.tree_map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), x0)
    same = (jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(want)
            and all(a.shape == b.shape for a, b in zip(jax.tree_util.tree_leaves(out),
                                                       jax.tree_util.tree_leaves(want))))
    if not same:
        raise InputError(f"`step` returned shapes {_shapes(out)} for a state shaped "
                         f"{_shapes(x0)}; it must return the next state in the same structure "
                         "and shapes as `x0`.")


def _stacked(given: Any, like: Any, n_steps: int, argument: str) -> Any:
    """The user's λ[0..n_steps] as float arrays matching `like` (λ by autodiff), or an error."""
    expected = _shapes(like)
    if isinstance(like, np.ndarray) and isinstance(given, (list, tuple)):
        given = _as_array(given, argument)  # an array state: a list of λ[k] stacks into one
    try:
        given = _floats(given, argument) if given is not None else None
    except InputError as error:
        raise InputError(f"{error} It must hold λ[0..n_steps] with shapes {expected}.") from None
    if given is None or (jax.tree_util.tree_structure(given)
                         != jax.tree_util.tree_structure(like)) or any(
            a.shape != b.shape for a, b in zip(jax.tree_util.tree_leaves(given),
                                               jax.tree_util.tree_leaves(like))):
        got = "None" if given is None else _shapes(given)
        raise InputError(
            f"`{argument}` has shape {got}; it must hold λ[0..n_steps], shape {expected} (each "
            f"leaf of the state stacked over the n_steps + 1 = {n_steps + 1} states)."
        )
    return given


def _rows(tree: Any, n_rows: int) -> np.ndarray:
    """The stacked leaves of `tree` as one (n_rows, size) array: row k is step k, flattened."""
    return np.concatenate([np.reshape(leaf, (n_rows, -1))
                           for leaf in jax.tree_util.tree_leaves(tree)], axis=1)


def _relative(diff: np.ndarray, norms: np.ndarray) -> np.ndarray:
    floor = max(1e-12 * float(np.max(norms, initial=0.0)), 1e-300)
    errors = diff / np.maximum(norms, floor)
    return np.where(np.isfinite(errors), errors, np.inf)


def inspect_adjoint(
    step: Callable[..., Any],
    x0: Any,
    n_steps: int,
    loss: Callable[..., Any],
    user_adjoint: Any,
    *,
    params: Any = None,
    rtol: float = 1e-8,
) -> AdjointInspection:
    """Compare a hand-written discrete adjoint with the one autodiff computes, step by step.

    step: x_next = step(x, k) for the state x at step k = 0..n_steps-1 (jax-traceable; ignore k
      if the step does not depend on it), e.g. one explicit Euler step of a PDE. With `params`,
      step(x, k, params).
    x0: the initial state: an array (a list of numbers is one), or a pytree of arrays (a dict
      of fields, a tuple, ...).
    loss: L(xs) of the whole trajectory xs: x0's structure with each leaf stacked over the
      n_steps + 1 states, leaf shape (n_steps + 1,) + leaf.shape (use xs[-1] alone for a
      terminal loss). With `params`, L(xs, params).
    user_adjoint: the user's λ[0..n_steps], stacked like xs, or a function user_adjoint(xs)
      returning it from the forward trajectory. With `params`, the pair (λ, dL/dparams), the
      second shaped like params (or None to compare the state adjoints only).
    params: the parameters the step (and loss) depend on, any pytree of arrays. The parameter
      gradient dL/dparams = ∂L/∂params + Σ_k (∂step/∂params at x[k])ᵀ λ[k+1] is then computed by
      autodiff too and compared with the user's, leaf by leaf.
    rtol: relative error above which a step (or a parameter) counts as diverged (errors are
      relative to ‖λ_ad[k]‖, floored at 1e-12 × the largest ‖λ_ad‖ so steps where the adjoint is
      ~0 do not raise false alarms).

        >>> report = ol.inspect_adjoint(euler_step, u0, 200, lambda us: jnp.sum(us[-1] ** 2),
        ...                             my_backward_loop)
        >>> report.first_divergence
        >>> report = ol.inspect_adjoint(lambda x, k, p: x + dt * p["a"] * x, x0, 200,
        ...                             lambda xs, p: jnp.sum(xs[-1] ** 2), my_adjoint_and_grad,
        ...                             params={"a": 0.3})
        >>> report.param_errors      # {"params['a']": relative error}
    """
    if not callable(step) or not callable(loss):
        raise InputError("`step` and `loss` must be functions: step(x, k) -> x_next, loss(xs).")
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise InputError(f"`n_steps={n_steps!r}` must be a positive whole number of steps.")
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float, np.floating, np.integer)) or (
            not math.isfinite(rtol) or rtol <= 0):
        raise InputError(f"`rtol={rtol!r}` must be a positive finite number (e.g. 1e-8).")
    with_params = params is not None
    if isinstance(x0, list):
        x0 = _as_array(x0, "x0")  # a list of numbers is one state vector, as for ol.solve's y0
    x0 = jax.tree_util.tree_map(jnp.asarray, _floats(x0, "x0"))
    params = jax.tree_util.tree_map(jnp.asarray, _floats(params, "params")) if with_params else ()
    _check_step(step, x0, params, with_params)
    n = int(n_steps)
    xs = jax.jit(_trajectory, static_argnums=(0, 2, 4))(step, x0, n, params, with_params)
    lam_ad, grad_ad = jax.jit(_autodiff_adjoint, static_argnums=(0, 2, 4))(
        step, xs, loss, params, with_params)
    lam_ad = jax.tree_util.tree_map(np.asarray, lam_ad)
    given = user_adjoint(xs) if callable(user_adjoint) else user_adjoint
    user_grad = None
    if with_params:
        if not (isinstance(given, (tuple, list)) and len(given) == 2):
            raise InputError("With `params`, `user_adjoint` must give the pair (λ, dL/dparams) "
                             "(dL/dparams may be None to compare the state adjoints only).")
        given, user_grad = given
    lam_user = _stacked(given, lam_ad, n, "user_adjoint")
    norms = np.linalg.norm(_rows(lam_ad, n + 1), axis=1)
    diffs = np.linalg.norm(_rows(lam_user, n + 1) - _rows(lam_ad, n + 1),
                           axis=1)
    errors = _relative(diffs, norms)
    bad = np.nonzero(errors > rtol)[0]
    first = int(bad.max()) if bad.size else None
    report = AdjointInspection(n_steps=n, rtol=float(rtol), errors=errors, norms=norms,
                               first_divergence=first, autodiff=lam_ad, user=lam_user)
    if with_params:
        report.param_gradient = jax.tree_util.tree_map(np.asarray, grad_ad)
        if user_grad is not None:
            report.param_errors = _param_errors(user_grad, report.param_gradient)
    return report


def _param_errors(user_grad: Any, autodiff: Any) -> dict[str, float]:
    """{"params['a']": relative error} for each leaf of the parameter gradient."""
    expected = _shapes(autodiff)
    try:
        user_grad = _floats(user_grad, "dL/dparams")
    except InputError as error:
        raise InputError(f"{error} The second item of `user_adjoint` must be dL/dparams, "
                         f"shaped {expected}.") from None
    paths = jax.tree_util.tree_flatten_with_path(autodiff)[0]
    if jax.tree_util.tree_structure(user_grad) != jax.tree_util.tree_structure(autodiff) or any(
            np.shape(a) != np.shape(b) for a, b in zip(jax.tree_util.tree_leaves(user_grad),
                                                       jax.tree_util.tree_leaves(autodiff))):
        raise InputError(f"The dL/dparams of `user_adjoint` has shape {_shapes(user_grad)}; it "
                         f"must be shaped like `params`: {expected}.")
    norms = np.array([np.linalg.norm(np.ravel(leaf)) for _, leaf in paths])
    diffs = np.array([np.linalg.norm(np.ravel(u - a)) for u, (_, a) in
                      zip(jax.tree_util.tree_leaves(user_grad), paths)])
    errors = _relative(diffs, norms)
    return {"params" + jax.tree_util.keystr(path): float(e) for (path, _), e in zip(paths, errors)}
