"""Counting compilations: the honest test that moving a slider never recompiles.

JAX reports every XLA compilation (and its duration) through `jax.monitoring`; we listen once
and count. `compile_count()` includes every program compiled in this process (odelab's and the
user's), so compare it before and after the code in question.
"""

from __future__ import annotations

import threading

import jax.monitoring

_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_LOCK = threading.Lock()
_STATE = {"count": 0, "seconds": 0.0, "in_progress": 0}


def _on_duration(event: str, duration: float, **_: object) -> None:
    if event == _BACKEND_COMPILE:
        with _LOCK:
            _STATE["count"] += 1
            _STATE["seconds"] += duration


jax.monitoring.register_event_duration_secs_listener(_on_duration)


def compile_count() -> int:
    """How many programs JAX has compiled in this process so far."""
    return _STATE["count"]


def compile_seconds() -> float:
    """Total seconds spent in XLA compilation in this process so far."""
    return _STATE["seconds"]
