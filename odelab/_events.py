"""What happens in the library, announced to whoever listens: solves, compilations, fits, checks.

The numerical core emits events and never knows who listens; the JupyterLab bridge (odelab.lab)
subscribes to fill the sidebar and the status bar, and the gradient check subscribes to see the
solves inside a user's function. A listener that raises is logged and dropped from that one
event, never allowed to break a computation.

    >>> from odelab import _events
    >>> unsubscribe = _events.subscribe(_events.SOLVE, lambda **e: print(e["solution"].stats))
    >>> ...
    >>> unsubscribe()

Events and what they carry (keyword arguments of the listener):

* ``SYSTEM``: a System or DelaySystem was defined (`system`).
* ``SOLVE``: a concrete (untraced) solve finished (`system`, `y0`, `params`, `t_span`,
  `solver`, `method`, `solution`, `seconds`, `compiled`).
* ``COMPILING``: odelab starts (`active=True`) or stops (`active=False`) compiling a program
  (`what`, a short description).
* ``OBJECTIVE``: a loss function was handed to the check, the explorer or a fit (`fun`,
  `params`, `name`, `source`: "check", "explore" or "fit"; from the check also `options`, the
  keyword arguments of that check).
* ``CHECKED``: a gradient check finished (`fun`, `report`).
* ``FIT``: a fit progressed (`result`, the live FitResult; `done`: whether it has ended; the
  first event also has `name` and `fun`, the loss(params) fitted or None).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

SYSTEM = "system"
SOLVE = "solve"
COMPILING = "compiling"
OBJECTIVE = "objective"
CHECKED = "checked"
FIT = "fit"
KINDS = (SYSTEM, SOLVE, COMPILING, OBJECTIVE, CHECKED, FIT)

Listener = Callable[..., None]

_logger = logging.getLogger("odelab")
_lock = threading.Lock()
_listeners: dict[str, tuple[Listener, ...]] = {kind: () for kind in KINDS}


def _check_kind(kind: str) -> None:
    if kind not in _listeners:
        raise ValueError(f"unknown odelab event {kind!r}; events are {', '.join(KINDS)}")


def subscribe(kind: str, listener: Listener) -> Callable[[], None]:
    """Call `listener(**payload)` after every event of `kind`; returns the unsubscribe function."""
    _check_kind(kind)
    with _lock:
        _listeners[kind] = _listeners[kind] + (listener,)
    return lambda: unsubscribe(kind, listener)


def unsubscribe(kind: str, listener: Listener) -> None:
    """Stop calling `listener` for `kind` (no error when it was not subscribed)."""
    _check_kind(kind)
    with _lock:
        _listeners[kind] = tuple(x for x in _listeners[kind] if x is not listener)


@contextlib.contextmanager
def listening(kind: str, listener: Listener) -> Iterator[None]:
    """Subscribe `listener` for the duration of a `with` block."""
    unsubscribe_it = subscribe(kind, listener)
    try:
        yield
    finally:
        unsubscribe_it()


def has_listeners(kind: str) -> bool:
    """Whether anyone listens to `kind` (emitters skip building costly payloads otherwise)."""
    return bool(_listeners[kind])


def emit(kind: str, **payload: Any) -> None:
    """Tell every listener of `kind`; a listener's failure is logged, never raised."""
    for listener in _listeners[kind]:
        try:
            listener(**payload)
        except Exception:
            _logger.exception("odelab: a listener of %r events failed", kind)
