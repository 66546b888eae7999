"""`Objective`: a system plus the scalar loss of its solution that the gradient views differentiate.

    >>> obj = ol.Objective(system, loss=lambda sol, p: jnp.sum(sol.ys[-1] ** 2))
    >>> ol.explore(obj)

Without `loss`, the loss is least squares against the observations (`data=(ts, ys)`, or the
system's own `system.data`; NaN entries count as unobserved), and without observations it is
the sum of squares of the final state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import InputError
from .ode import System

Loss = Callable[[Any, Any], Any]  # loss(sol: ol.Solution, params) -> scalar


def final_state_squares(sol: Any, params: Any) -> jax.Array:
    """The default loss without data: sum of squares of the state at the end of the time span."""
    return jnp.sum(sol.ys[-1] ** 2)


def least_squares(observed: np.ndarray) -> Loss:
    """Half the sum of squared residuals against `observed` (NaN entries are skipped)."""
    seen = np.isfinite(observed)
    target = np.where(seen, observed, 0.0)

    def loss(sol: Any, params: Any) -> jax.Array:
        residual = jnp.where(seen, sol.ys - target, 0.0)
        return 0.5 * jnp.sum(residual**2)

    return loss


class Objective:
    """A System and a scalar loss `loss(sol, params)` of its solution.

    system: the odelab System to solve.
    loss: a function of the Solution and the parameters returning a scalar; see the module
      docstring for the default.
    data: observations `(ts, ys)` with ys of shape (len(ts), n_states); when given (or when the
      system carries `data`), the loss is evaluated on a solve saved at exactly those times.
    """

    def __init__(self, system: System, loss: Loss | None = None, data: Any = None):
        if not isinstance(system, System):
            raise InputError(
                f"`system` must be an odelab System (ol.System(...) or ol.gallery.*); got "
                f"{type(system).__name__}."
            )
        if loss is not None and not callable(loss):
            raise InputError(
                f"`loss` must be a function loss(sol, params) -> scalar; got {type(loss).__name__}."
            )
        self.system = system
        self.data = system._check_data(data) if data is not None else system.data
        if loss is not None:
            self.loss, self.loss_name = loss, getattr(loss, "__name__", "loss")
        elif self.data is not None:
            self.loss, self.loss_name = least_squares(self.data[1]), "least squares vs data"
        else:
            self.loss, self.loss_name = final_state_squares, "sum of squares of the final state"

    @property
    def save_times(self) -> np.ndarray | None:
        """The times the loss needs the solution at (the data times), or None for any grid."""
        return None if self.data is None else self.data[0]

    def check_span(self, t0: float, t1: float) -> None:
        """Raise InputError when the observations fall outside the time span (t0, t1)."""
        ts = self.save_times
        if ts is not None and (ts[0] < t0 or ts[-1] > t1):
            raise InputError(
                f"The observations run from t={ts[0]:g} to t={ts[-1]:g}, outside the time span "
                f"({t0:g}, {t1:g}). Widen the time span to cover the data."
            )

    def __repr__(self) -> str:
        return f"Objective({self.system.name!r}, loss={self.loss_name!r})"


def as_objective(target: Any, loss: Loss | None = None, data: Any = None) -> Objective:
    """`target` as an Objective: an Objective as it is, a System wrapped with `loss`/`data`."""
    if isinstance(target, Objective):
        if loss is not None or data is not None:
            raise InputError(
                "`loss=` and `data=` are for a System; this Objective already has its own. "
                "Build a new ol.Objective(system, loss, data) instead."
            )
        return target
    if isinstance(target, System):
        return Objective(target, loss=loss, data=data)
    raise InputError(
        f"ol.explore needs a System or an Objective; got {type(target).__name__}. Try "
        "ol.explore(ol.gallery.lotka_volterra())."
    )
