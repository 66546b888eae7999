"""Counting compilations: the honest test that moving a slider never recompiles.

JAX reports every XLA compilation (and its duration) through `jax.monitoring`; we listen once
and count. `compile_count()` includes every program compiled in this process (odelab's and the
user's), so compare it before and after the code in question. It counts requests to compile,
including those JAX served from its persistent cache; `cache_hit_count()` counts those, so
`compile_count() - cache_hit_count()` is the number of programs XLA actually compiled.
`trace_count()` counts the traces of odelab's own solve programs.
"""

from __future__ import annotations

import threading

import jax.monitoring

_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT = "/jax/compilation_cache/cache_hits"
_LOCK = threading.Lock()
_STATE = {"count": 0, "seconds": 0.0, "in_progress": 0, "hits": 0}


def _on_duration(event: str, duration: float, **_: object) -> None:
    if event == _BACKEND_COMPILE:
        with _LOCK:
            _STATE["count"] += 1
            _STATE["seconds"] += duration


def _on_event(event: str, **_: object) -> None:
    if event == _CACHE_HIT:
        with _LOCK:
            _STATE["hits"] += 1


jax.monitoring.register_event_duration_secs_listener(_on_duration)
jax.monitoring.register_event_listener(_on_event)


def compile_count() -> int:
    """How many programs JAX has compiled in this process so far."""
    return _STATE["count"]


def cache_hit_count() -> int:
    """How many of those programs came from JAX's persistent compilation cache instead."""
    return _STATE["hits"]


def compile_seconds() -> float:
    """Total seconds spent in XLA compilation in this process so far."""
    return _STATE["seconds"]


class _TraceCounter:
    """Counts traces of odelab's solve programs (ODE and delay): one trace is one compilation."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.traces = 0
        self.compile_seconds = 0.0

    def bump(self) -> None:
        with self.lock:
            self.traces += 1


SOLVE_TRACES = _TraceCounter()


def trace_count() -> int:
    """How many times odelab has traced a solve program in this process."""
    return SOLVE_TRACES.traces
