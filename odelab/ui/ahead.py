"""Compiling ahead: the programs a person is likely to ask for next, while they look.

After the explorer has drawn a request, the views behind the other controls are a compile
away: the reference gradient of the Gradient tab (when it needs its own program), the gradient
of the next method in the method menu, the trajectory and gradient of the next solver in the
solver menu. `CompileAhead` runs such items one at a time on a daemon thread, so that when the
person picks them only the run is left.

It never competes with what was asked for, as far as a compile can be stopped:
- an item starts only after a quiet spell: nothing asked of the explorer (`hold()`), the
  explorer not busy, and no program compiled anywhere in the process, for `quiet` seconds;
- any request of the explorer (`hold()`) drops the items not yet started; the one already
  compiling finishes (a compilation cannot be interrupted), and is the only one that can
  share the machine with the request;
- items whose program is already compiled are skipped (`done` keeps their keys), so looking
  around after the first frame costs each program once.

The thread lives only while items are queued, so a closed explorer is not kept alive by it.
Errors of an item (a solver that cannot integrate this system, say) are kept in `failed` and
otherwise ignored: it is the person's own request that reports them, if they make it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Hashable

from .._compilations import compile_count

QUIET_SECONDS = 1.5


def enabled_by_default() -> bool:
    """Whether explorers compile ahead unless told (ODELAB_COMPILE_AHEAD=0 turns it off)."""
    setting = os.environ.get("ODELAB_COMPILE_AHEAD", "1").strip().lower()
    return setting not in ("0", "off", "false", "no")


class CompileAhead:
    """A queue of (key, compile-and-run thunk), worked through on a low-priority thread.

    busy: says whether the owner is computing something asked for (then nothing starts).
    """

    def __init__(self, busy: Callable[[], bool] = lambda: False,
                 quiet: float = QUIET_SECONDS) -> None:
        self.quiet = quiet
        self.done: set[Hashable] = set()  # keys whose programs were compiled (here or asked)
        self.failed: dict[Hashable, str] = {}
        self.running: Hashable | None = None
        self._busy = busy
        self._items: list[tuple[Hashable, Callable[[], object]]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._activity = time.monotonic()
        self._closed = False

    # -- what the owner calls -------------------------------------------------------------------
    def plan(self, items: list[tuple[Hashable, Callable[[], object]]]) -> None:
        """Replace the queue with `items` (those already compiled are left out)."""
        with self._cond:
            if self._closed:
                return
            self._items = [(k, fn) for k, fn in items if k not in self.done]
            if self._items and self._thread is None:
                self._thread = threading.Thread(target=self._work, name="odelab-ahead",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def hold(self) -> None:
        """Something was asked for: drop the items not started, and wait for a new quiet spell."""
        with self._cond:
            self._items = []
            self._activity = time.monotonic()
            self._cond.notify_all()

    def mark_done(self, key: Hashable) -> None:
        """The owner compiled `key`'s program itself (asked for): nothing to do ahead for it."""
        with self._cond:
            self.done.add(key)

    def pending(self) -> list[Hashable]:
        """The keys queued or compiling now."""
        with self._cond:
            return ([self.running] if self.running is not None else []) + \
                [k for k, _ in self._items]

    def wait(self, timeout: float = 600.0) -> bool:
        """Block until the queue is empty and nothing compiles (for tests and scripts)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._items or self.running is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def close(self) -> None:
        """Drop the queue and let the thread end (an item compiling finishes on its own)."""
        with self._cond:
            self._closed = True
            self._items = []
            self._cond.notify_all()

    # -- the thread -----------------------------------------------------------------------------
    def _quiet_since(self) -> float:
        """Seconds of quiet so far (compilations anywhere count as activity)."""
        count = compile_count()
        if count != self._seen_count:
            self._seen_count, self._activity = count, time.monotonic()
        return time.monotonic() - self._activity

    def _next(self) -> tuple[Hashable, Callable[[], object]] | None:
        """The next item once the machine is quiet; None when there is nothing left to do."""
        self._seen_count = compile_count()
        with self._cond:
            while True:
                if self._closed or not self._items or sys.is_finalizing():
                    self._thread = None
                    self._cond.notify_all()
                    return None
                if self._quiet_since() >= self.quiet and not self._busy():
                    key, fn = self._items.pop(0)
                    self.running = key
                    return key, fn
                self._cond.wait(0.1)

    def _work(self) -> None:
        while (item := self._next()) is not None:
            key, fn = item
            try:
                fn()
            except Exception as err:  # the person's own request reports it, if they make it
                self.failed[key] = f"{type(err).__name__}: {str(err)[:200]}"
            finally:
                with self._cond:
                    self.done.add(key)
                    self.running = None
                    self._activity = time.monotonic()
                    self._cond.notify_all()
