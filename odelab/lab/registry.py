"""A registry of the live odelab objects in this Python process (systems, objectives, runs, fits).

The JupyterLab sidebar lists what is registered here; `odelab.lab.feed` fills it from the
library's events:

    >>> from odelab.lab import registry
    >>> item_id = registry.track(system, "system", "lotka-volterra")
    >>> registry.update(system, last_solver="tsit5", run_time_s=0.012)

Objects are held through weak references where Python allows it, so tracking never keeps an object
alive; an entry disappears when its object is garbage collected. Pure Python: no JAX, no UI.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "KINDS",
    "Registry",
    "default_registry",
    "get",
    "info",
    "items",
    "subscribe",
    "track",
    "unsubscribe",
    "untrack",
    "update",
]

KINDS = ("system", "objective", "run", "fit")

_logger = logging.getLogger("odelab")

# Objects that refuse weak references (plain dicts, some builtins) are held strongly; this bounds
# how many of them the registry keeps so a loop creating them cannot grow memory without limit.
_MAX_STRONG_ENTRIES = 200
_MAX_NAME_LENGTH = 120
_MAX_TEXT_LENGTH = 2000
_MAX_LIST_LENGTH = 200

Subscriber = Callable[[str | None], None]


class _Entry:
    __slots__ = ("id", "kind", "name", "created", "fields", "_ref", "_strong")

    def __init__(self, item_id: str, kind: str, name: str, obj: Any, on_dead: Callable):
        self.id = item_id
        self.kind = kind
        self.name = name
        self.created = time.time()
        self.fields: dict[str, Any] = {}
        try:
            self._ref = weakref.ref(obj, lambda _ref, item_id=item_id: on_dead(item_id))
            self._strong = None
        except TypeError:
            self._ref = None
            self._strong = obj

    @property
    def held_strongly(self) -> bool:
        return self._ref is None

    def obj(self) -> Any:
        return self._strong if self._ref is None else self._ref()


class Registry:
    """Live objects keyed by short ids such as ``"system-3"``, with change notifications.

    Thread safe: a solve running in a worker thread may update while the kernel reads.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._by_object: dict[int, str] = {}
        self._counter = itertools.count(1)
        self._subscribers: list[Subscriber] = []

    # -- recording -------------------------------------------------------------------------------

    def track(self, obj: Any, kind: str, name: str | None = None, **fields: Any) -> str:
        """Record ``obj`` as a live item of ``kind`` and return its id.

        Tracking the same object again returns its existing id (and applies ``name``/``fields``).
        """
        if kind not in KINDS:
            raise ValueError(f"`kind={kind!r}` is not a registry kind; use one of {KINDS}.")
        with self._lock:
            existing = self._id_of(obj)
            if existing is not None:
                entry = self._entries[existing]
                if name:
                    entry.name = _clip(str(name), _MAX_NAME_LENGTH)
                entry.fields.update(fields)
                item_id = existing
            else:
                item_id = f"{kind}-{next(self._counter)}"
                label = _clip(str(name) if name else item_id, _MAX_NAME_LENGTH)
                entry = _Entry(item_id, kind, label, obj, self._forget)
                entry.fields.update(fields)
                self._entries[item_id] = entry
                self._by_object[id(obj)] = item_id
                self._drop_oldest_strong_entries()
        self._notify(item_id)
        return item_id

    def update(self, obj_or_id: Any, **fields: Any) -> str | None:
        """Merge ``fields`` into the item of an object (or id); untracked objects are ignored.

        Returns the item id, or None when nothing is tracked under that object or id.
        """
        with self._lock:
            item_id = self._resolve(obj_or_id)
            if item_id is None:
                return None
            self._entries[item_id].fields.update(fields)
        self._notify(item_id)
        return item_id

    def untrack(self, obj_or_id: Any) -> bool:
        """Remove an item; returns whether something was removed."""
        with self._lock:
            item_id = self._resolve(obj_or_id)
            if item_id is None:
                return False
            self._remove(item_id)
        self._notify(item_id)
        return True

    # -- reading ---------------------------------------------------------------------------------

    def get(self, item_id: str) -> Any:
        """The live object tracked under ``item_id``, or None if unknown or collected."""
        with self._lock:
            entry = self._entries.get(item_id)
            return None if entry is None else entry.obj()

    def id_of(self, obj: Any) -> str | None:
        """The id under which ``obj`` is tracked, or None."""
        with self._lock:
            return self._id_of(obj)

    def info(self, item_id: str) -> dict | None:
        """The JSON-able description of one item, or None if unknown."""
        with self._lock:
            entry = self._entries.get(item_id)
            return None if entry is None else _describe(entry)

    def items(self) -> list[dict]:
        """All live items as JSON-able dicts, oldest first."""
        with self._lock:
            return [_describe(entry) for entry in self._entries.values() if _alive(entry)]

    def __len__(self) -> int:
        return len(self.items())

    # -- notifications ---------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback(item_id)`` after every change (``item_id`` of the changed item)."""
        with self._lock:
            if callback not in self._subscribers:
                self._subscribers.append(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    # -- internals -------------------------------------------------------------------------------

    def _id_of(self, obj: Any) -> str | None:
        item_id = self._by_object.get(id(obj))
        # id() values are reused after an object dies: confirm the entry still holds this object.
        if item_id is not None and item_id in self._entries and self._entries[item_id].obj() is obj:
            return item_id
        return None

    def _resolve(self, obj_or_id: Any) -> str | None:
        if isinstance(obj_or_id, str) and obj_or_id in self._entries:
            return obj_or_id
        return self._id_of(obj_or_id)

    def _remove(self, item_id: str) -> None:
        entry = self._entries.pop(item_id, None)
        if entry is None:
            return
        for key, value in list(self._by_object.items()):
            if value == item_id:
                del self._by_object[key]

    def _forget(self, item_id: str) -> None:
        # Called by the garbage collector, possibly in another thread.
        with self._lock:
            if item_id not in self._entries:
                return
            self._remove(item_id)
        self._notify(item_id)

    def _drop_oldest_strong_entries(self) -> None:
        strong = [entry.id for entry in self._entries.values() if entry.held_strongly]
        for item_id in strong[: max(0, len(strong) - _MAX_STRONG_ENTRIES)]:
            self._remove(item_id)

    def _notify(self, item_id: str | None) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(item_id)
            except Exception:  # a broken listener must never break a solve
                _logger.exception("odelab registry subscriber %r failed", callback)


def _alive(entry: _Entry) -> bool:
    return entry.held_strongly or entry.obj() is not None


def _describe(entry: _Entry) -> dict:
    described = {key: _jsonable(value) for key, value in entry.fields.items()}
    described.update(id=entry.id, kind=entry.kind, name=entry.name, created=entry.created)
    return described


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Convert field values (numpy scalars, tuples, arrays, objects) into plain JSON values."""
    if value is None or isinstance(value, bool | str):
        return _clip(value, _MAX_TEXT_LENGTH) if isinstance(value, str) else value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):  # float() also turns numpy.float64 into a plain float
        return float(value) if math.isfinite(value) else None
    if depth > 3:
        return _clip(repr(value), _MAX_TEXT_LENGTH)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in list(value.items())[:_MAX_LIST_LENGTH]}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, depth + 1) for v in list(value)[:_MAX_LIST_LENGTH]]
    # numpy / JAX scalars and small arrays expose .item() / .tolist() without importing them here.
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        return _jsonable(value.item(), depth + 1)
    if (
        hasattr(value, "tolist")
        and getattr(value, "size", _MAX_LIST_LENGTH + 1) <= _MAX_LIST_LENGTH
    ):
        return _jsonable(value.tolist(), depth + 1)
    return _clip(str(value), _MAX_TEXT_LENGTH)


default_registry = Registry()
"""The registry of this process; the module-level functions below act on it."""

track = default_registry.track
update = default_registry.update
untrack = default_registry.untrack
get = default_registry.get
info = default_registry.info
items = default_registry.items
subscribe = default_registry.subscribe
unsubscribe = default_registry.unsubscribe
