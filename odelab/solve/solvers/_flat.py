"""Helpers shared by the stiff solvers: work on one flat state vector whatever the pytree."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


class FlatField:
    """The vector field of an ODE term as a function of a flat state vector.

    Stiff solvers need the Jacobian as a matrix, so they work on `ravel_pytree(y)` and
    turn results back into the user's pytree with `unravel`.

    Backward in time (t1 < t0), diffrax hands the solver a term in reversed time τ = -t whose
    `vf` is the user's field at t but whose control (dt) carries the sign. A scheme that
    multiplies by its own step h = τ1 - τ0 needs dy/dτ = -f, so the field here includes the
    sign of the control of a unit step (+1 forward, -1 backward).
    """

    def __init__(self, terms, y0, args):
        self.y0, self.unravel = ravel_pytree(y0)
        self._terms = terms
        self._args = args
        self._direction = terms.contr(0.0, 1.0)

    def __call__(self, t, y_flat):
        out = self._terms.vf(t, self.unravel(y_flat), self._args)
        return (self._direction * ravel_pytree(out)[0]).astype(y_flat.dtype)

    def with_jacobian(self, t, y_flat):
        """f(t, y), ∂f/∂y (n×n) and ∂f/∂t at one point."""
        jac = jax.jacfwd(lambda y: self(t, y))(y_flat)
        t = jnp.asarray(t, dtype=y_flat.dtype)
        f, dfdt = jax.jvp(lambda s: self(s, y_flat), (t,), (jnp.ones_like(t),))
        return f, jac, dfdt

    def unravel_stack(self, rows):
        """A (k, n) array of flat states as a pytree whose leaves have a leading axis k."""
        return jax.vmap(self.unravel)(rows)


def unit_interval(t0, t, t1):
    """(t - t0) / (t1 - t0), and 0 for an empty interval (no division by zero)."""
    empty = t0 == t1
    width = jnp.where(empty, 1, t1 - t0)
    return jnp.where(empty, 0, (t - t0) / width)


def tree_evaluate(fn: Callable, *trees):
    """Apply a leaf-wise formula to matching pytrees (state leaves and coefficient leaves)."""
    return jax.tree_util.tree_map(fn, *trees)
