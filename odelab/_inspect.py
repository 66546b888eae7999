"""`inspect_adjoint`: compare a hand-written discrete adjoint with autodiff, step by step.

For a time-stepping loop x[k+1] = step(x[k], k), k = 0..n_steps-1, and a loss of the whole
trajectory L(x[0], ..., x[n_steps]), the discrete adjoint is λ[k] = dL/dx[k], the total
derivative through every later step:

    λ[n] = ∂L/∂x[n],    λ[k] = ∂L/∂x[k] + (∂step/∂x(x[k], k))ᵀ λ[k+1].

odelab computes it with `jax.vjp` of each step and reports the first step (in the backward order
an adjoint is computed) where the user's adjoint departs from it.

    >>> report = ol.inspect_adjoint(step, x0, 100, loss, my_adjoint)
    >>> report.first_divergence      # None when they agree
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._diagnose import _finite_or_none
from ._errors import InputError
from ._report_html import badge, number, table, text_table


@dataclasses.dataclass
class AdjointInspection:
    """The step-by-step comparison of a user's adjoint with the autodiff one.

    errors[k] = ‖λ_user[k] − λ_ad[k]‖ / max(‖λ_ad[k]‖, floor) for k = 0..n_steps.
    first_divergence: the largest k with errors[k] > rtol (the first wrong one in the backward
    order the adjoint is computed in), or None. If λ[k+1] is right and λ[k] is wrong, the bug is
    in the backward step from k+1 to k: the transpose of step k, or the loss's direct term at k.
    """

    n_steps: int
    rtol: float
    errors: np.ndarray
    norms: np.ndarray  # ‖λ_ad[k]‖
    first_divergence: int | None
    autodiff: np.ndarray = dataclasses.field(repr=False)
    user: np.ndarray = dataclasses.field(repr=False)

    @property
    def ok(self) -> bool:
        return self.first_divergence is None

    @property
    def verdict(self) -> str:
        return "agrees" if self.ok else "diverges"

    def summary(self) -> str:
        if self.ok:
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

    def _window(self) -> list[int]:
        k = self.n_steps if self.first_divergence is None else self.first_divergence
        return list(range(min(self.n_steps, k + 2), max(-1, k - 3), -1))

    def __str__(self) -> str:
        rows = [[str(k), number(float(self.norms[k])), number(float(self.errors[k])),
                 "ok" if self.errors[k] <= self.rtol else "WRONG"] for k in self._window()]
        return "\n".join([f"Adjoint inspection ({self.n_steps} steps): {self.verdict.upper()}",
                          self.summary(), "",
                          text_table(["step", "‖λ autodiff‖", "rel. error", ""], rows)])

    def __repr__(self) -> str:
        return (f"<AdjointInspection {self.verdict}: first_divergence={self.first_divergence}, "
                f"n_steps={self.n_steps}>")

    def _repr_html_(self) -> str:
        rows = [[str(k), number(float(self.norms[k])), number(float(self.errors[k])),
                 badge("agrees" if self.errors[k] <= self.rtol else "diverges")]
                for k in self._window()]
        return (f"<div><b>Adjoint inspection</b> ({self.n_steps} steps) {badge(self.verdict)}"
                f"<p>{html.escape(self.summary())}</p>"
                f"{table(['step', '‖λ autodiff‖', 'relative error', ''], rows, raw=True)}</div>")

    def to_dict(self) -> dict[str, Any]:
        return _finite_or_none({
            "n_steps": self.n_steps, "rtol": self.rtol, "ok": self.ok,
            "first_divergence": self.first_divergence,
            "errors": [float(e) for e in self.errors], "norms": [float(x) for x in self.norms],
            "summary": self.summary(),
        })


def _trajectory(step: Callable, x0: Any, n_steps: int) -> Any:
    def body(x, k):
        nxt = step(x, k)
        return nxt, nxt

    _, xs = jax.lax.scan(body, x0, jnp.arange(n_steps))
    return jnp.concatenate([x0[None], xs])


def _autodiff_adjoint(step: Callable, xs: Any, loss: Callable) -> Any:
    direct = jax.grad(loss)(xs)  # ∂L/∂x[k] holding the other states fixed
    n = xs.shape[0] - 1

    def back(lam_next, k):
        _, pullback = jax.vjp(lambda x: step(x, k), xs[k])
        lam = direct[k] + pullback(lam_next)[0]
        return lam, lam

    _, lams = jax.lax.scan(back, direct[n], jnp.arange(n - 1, -1, -1))
    return jnp.concatenate([lams[::-1], direct[n][None]])


def inspect_adjoint(
    step: Callable[[Any, Any], Any],
    x0: Any,
    n_steps: int,
    loss: Callable[[Any], Any],
    user_adjoint: Any,
    *,
    rtol: float = 1e-8,
) -> AdjointInspection:
    """Compare a hand-written discrete adjoint with the one autodiff computes, step by step.

    step: x_next = step(x, k) for the state array x at step k = 0..n_steps-1 (jax-traceable;
      ignore k if the step does not depend on it), e.g. one explicit Euler step of a PDE.
    x0: the initial state (an array).
    loss: L(xs) of the whole trajectory xs, shape (n_steps + 1,) + x0.shape (use xs[-1] alone
      for a terminal loss).
    user_adjoint: the user's λ[0..n_steps], shape (n_steps + 1,) + x0.shape, or a function
      user_adjoint(xs) returning it from the forward trajectory.
    rtol: relative error above which a step counts as diverged (errors are relative to
      ‖λ_ad[k]‖, floored at 1e-12 × the largest ‖λ_ad‖ so steps where the adjoint is ~0 do not
      raise false alarms).

        >>> report = ol.inspect_adjoint(euler_step, u0, 200, lambda us: jnp.sum(us[-1] ** 2),
        ...                             my_backward_loop)
        >>> report.first_divergence
    """
    if not callable(step) or not callable(loss):
        raise InputError("`step` and `loss` must be functions: step(x, k) -> x_next, loss(xs).")
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise InputError(f"`n_steps={n_steps!r}` must be a positive whole number of steps.")
    x0 = jnp.asarray(x0, dtype=float)
    xs = jax.jit(_trajectory, static_argnums=(0, 2))(step, x0, int(n_steps))
    lam_ad = np.asarray(jax.jit(_autodiff_adjoint, static_argnums=(0, 2))(step, xs, loss))
    given = user_adjoint(xs) if callable(user_adjoint) else user_adjoint
    lam_user = np.asarray(given, dtype=float)
    if lam_user.shape != lam_ad.shape:
        raise InputError(
            f"`user_adjoint` has shape {lam_user.shape}; it must hold λ[0..n_steps], shape "
            f"{lam_ad.shape} (n_steps + 1 states)."
        )
    axes = tuple(range(1, lam_ad.ndim))
    norms = np.sqrt(np.sum(lam_ad**2, axis=axes)) if axes else np.abs(lam_ad)
    diff = lam_user - lam_ad
    diffs = np.sqrt(np.sum(diff**2, axis=axes)) if axes else np.abs(diff)
    floor = max(1e-12 * float(np.max(norms)), 1e-300)
    errors = diffs / np.maximum(norms, floor)
    errors = np.where(np.isfinite(errors), errors, np.inf)
    bad = np.nonzero(errors > rtol)[0]
    first = int(bad.max()) if bad.size else None
    return AdjointInspection(n_steps=int(n_steps), rtol=float(rtol), errors=errors, norms=norms,
                             first_divergence=first, autodiff=lam_ad, user=lam_user)
