"""Helpers shared by the gallery modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from ..system import System


def slider(
    default: float,
    lo: float,
    hi: float,
    *,
    log: bool = False,
    unit: str = "",
    description: str = "",
) -> dict[str, Any]:
    """A `param_info` entry whose range always contains `default`.

    Gallery functions take overrides (``lorenz(rho=300.0)``); widening the range keeps the
    slider able to show the value the user asked for.
    """
    lo, hi = min(lo, default), max(hi, default)
    if log and lo <= 0:  # a non-positive override cannot live on a log scale
        log = False
    return dict(range=(lo, hi), log=log, unit=unit, description=description)


def pick(given: Any, default: Any) -> Any:
    """`given` unless it is None."""
    return default if given is None else given


ClosedForm = Callable[[Any, Any, Any], Any]


def attach_exact(system: System, closed_form: ClosedForm) -> System:
    """Give `system` an ``exact(ts, y0=None, params=None)`` method returning y at the times `ts`.

    The result has shape ``(len(ts), n_states)``; `y0` and `params` default to the system's own
    and a partial params dict overrides just the named entries, as in `solve`.
    """

    def exact(ts: Any, y0: Any = None, params: Any = None) -> Any:
        y_start = system.y0 if y0 is None else system.check_y0(y0)
        return closed_form(
            jnp.asarray(ts) - system.t_span[0], jnp.asarray(y_start), system.merge_params(params)
        )

    system.exact = exact  # type: ignore[attr-defined]
    return system
