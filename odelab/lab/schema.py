"""The messages the JupyterLab extension may send over the "odelab" comm, and their check.

Every request is a small JSON object with a ``type`` and, depending on the type, an item ``id`` or
``settings``; an optional integer ``seq`` is echoed back so the front end can match replies.
Anything else (unknown type, missing or extra keys, a malformed id, an oversized payload) is
rejected with a :class:`CommMessageError` whose message says what was wrong. Nothing received
is ever executed.

Replies from the kernel have the types listed in :data:`REPLY_TYPES`; the front end checks them with
the mirror of this module (``extension/src/protocol.ts``). The names of the gradient methods and
solvers are not copied here: they come from the library's registries (`odelab.solve`), and the
kernel sends them to the front end in its reply to "hello".
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..solve import method_names

__all__ = [
    "COMM_TARGET",
    "MAX_MESSAGE_BYTES",
    "method_choices",
    "REPLY_TYPES",
    "REQUEST_TYPES",
    "CommMessageError",
    "Request",
    "validate_request",
]

COMM_TARGET = "odelab"
PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 4096
ITEM_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SOLVER_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
REPLY_TYPES = ("items", "status", "defaults", "display", "error")


class CommMessageError(ValueError):
    """A message from the front end that does not follow the odelab comm protocol."""


@dataclass(frozen=True)
class Request:
    """A validated request: its ``type`` and the fields that type carries."""

    type: str
    seq: int | None = None
    id: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def _check_item_id(value: Any) -> str:
    if not isinstance(value, str) or not ITEM_ID_PATTERN.match(value):
        raise CommMessageError(
            f"`id` must be 1-64 letters, digits, '_' or '-' (an id from the item list); "
            f"got {_preview(value)}."
        )
    return value


def _check_tolerance(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommMessageError(f"`settings.{name}` must be a number; got {_preview(value)}.")
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise CommMessageError(f"`settings.{name}` must be between 0 and 1; got {value!r}.")
    return float(value)


def _check_solver(value: Any) -> str:
    if not isinstance(value, str) or not SOLVER_NAME_PATTERN.match(value):
        raise CommMessageError(
            f"`settings.solver` must be a solver name such as 'tsit5'; got {_preview(value)}."
        )
    return value


def method_choices() -> tuple[str, ...]:
    """The gradient method names a setting may hold: "auto" and every method for ODEs."""
    return ("auto", *method_names("ode"))


def _check_method(value: Any) -> str:
    choices = method_choices()
    if value not in choices:
        raise CommMessageError(
            f"`settings.method` must be one of {', '.join(choices)}; got {_preview(value)}."
        )
    return value


_SETTING_CHECKS: dict[str, Callable[[Any], Any]] = {
    "solver": _check_solver,
    "method": _check_method,
    "rtol": lambda value: _check_tolerance("rtol", value),
    "atol": lambda value: _check_tolerance("atol", value),
}


def _check_settings(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise CommMessageError(f"`settings` must be an object; got {_preview(value)}.")
    unknown = sorted(set(value) - set(_SETTING_CHECKS))
    if unknown:
        raise CommMessageError(
            f"`settings` has unknown keys {unknown}; allowed: {sorted(_SETTING_CHECKS)}."
        )
    return {key: _SETTING_CHECKS[key](item) for key, item in value.items()}


# For each request type: the keys it must carry and how each is checked. `type` and `seq` are
# accepted everywhere.
REQUEST_TYPES: dict[str, dict[str, Callable[[Any], Any]]] = {
    "hello": {},
    "list": {},
    "status": {},
    "open_explorer": {"id": _check_item_id},
    "check_gradient": {"id": _check_item_id},
    "settings": {"settings": _check_settings},
}


def validate_request(data: Any) -> Request:
    """Check one message from the front end and return it as a :class:`Request`.

    Raises :class:`CommMessageError` when the message breaks the protocol.
    """
    _check_size(data)
    if not isinstance(data, Mapping):
        raise CommMessageError(f"a message must be a JSON object; got {type(data).__name__}.")
    kind = data.get("type")
    if kind is None:
        raise CommMessageError("a message needs a `type`.")
    if not isinstance(kind, str):
        raise CommMessageError(
            f"`type` {_preview(kind)} is not one of {', '.join(sorted(REQUEST_TYPES))} (it must "
            "be a string).")
    if kind not in REQUEST_TYPES:
        raise CommMessageError(
            f"`type` {_preview(kind)} is not one of {', '.join(sorted(REQUEST_TYPES))}."
        )
    checks = REQUEST_TYPES[kind]
    extra = sorted(set(data) - set(checks) - {"type", "seq"})
    if extra:
        raise CommMessageError(f"a '{kind}' message does not take the keys {extra}.")
    missing = sorted(set(checks) - set(data))
    if missing:
        raise CommMessageError(f"a '{kind}' message needs the keys {missing}.")
    seq = data.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
        raise CommMessageError(f"`seq` must be a non-negative integer; got {_preview(seq)}.")
    checked = {key: check(data[key]) for key, check in checks.items()}
    return Request(type=kind, seq=seq, **checked)


def _check_size(data: Any) -> None:
    try:
        size = len(json.dumps(data, allow_nan=False).encode())
    except (TypeError, ValueError) as error:
        raise CommMessageError(f"a message must be plain JSON ({error}).") from None
    if size > MAX_MESSAGE_BYTES:
        raise CommMessageError(
            f"a message may be at most {MAX_MESSAGE_BYTES} bytes; this one has {size}."
        )


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
