"""The kernel side of the odelab JupyterLab extension: one comm, target "odelab".

Inside a Jupyter kernel, :func:`activate` (called when odelab is imported there) registers the
comm target, opens a comm to the front end and starts feeding the registry from the library's
events (`feed`). The front end then asks for the item list, the environment status and the
names of the methods and solvers, and for actions on an item by its id ("open_explorer",
"check_gradient"); it also sends the user's solver settings, which are checked like the
arguments of `ol.solve` and become the session defaults of every solve.

Every message is checked by :mod:`odelab.lab.schema` first; text received is never executed, only
matched against a fixed set of requests. Outside a kernel nothing here runs.
"""

from __future__ import annotations

import html
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import _events
from .._errors import OdelabError
from ..solve import SOLVERS, method_names, session_defaults, set_session_defaults
from . import feed as _feed
from . import registry as _registry
from .schema import COMM_TARGET, PROTOCOL_VERSION, CommMessageError, Request, validate_request

__all__ = [
    "LabBridge",
    "activate",
    "environment_status",
    "lab_defaults",
    "set_compiling",
]

_logger = logging.getLogger("odelab")

# At most this many front ends (browser tabs, reloads) are served; older comms are closed.
_MAX_COMMS = 8
# Item and status pushes are spaced by at least this much so a training loop that updates the
# registry every step does not flood the browser.
PUSH_INTERVAL_S = 0.25

_state_lock = threading.Lock()
_compiling = 0  # programs being compiled now
_bridge: LabBridge | None = None


def lab_defaults() -> dict[str, Any]:
    """The solver defaults chosen in JupyterLab's settings (keys solver, method, rtol, atol).

    Only the values the user set are present; an empty dict means "use the library defaults".
    """
    return session_defaults()


def set_compiling(compiling: bool) -> None:
    """Tell the status bar whether odelab is compiling now (True before, False after)."""
    global _compiling
    with _state_lock:
        before = _compiling > 0
        _compiling = max(0, _compiling + (1 if compiling else -1))
        changed = before != (_compiling > 0)
    if changed and _bridge is not None:
        _bridge.status_changed()


def _on_compiling(*, active: bool, **_: Any) -> None:
    set_compiling(active)


def capabilities() -> dict[str, Any]:
    """The method and solver names the front end offers (never copied into the front end)."""
    return {
        "methods": {"ode": ["auto", *method_names("ode")],
                    "delay": ["auto", *method_names("delay")]},
        "solvers": [{"name": spec.name, "stiff": spec.stiff, "adaptive": spec.adaptive,
                     "description": spec.description} for spec in SOLVERS.values()],
    }


def environment_status() -> dict[str, Any]:
    """JAX backend, device names and count, float64, compilation in progress, odelab version."""
    odelab = sys.modules.get("odelab")
    status: dict[str, Any] = {
        "backend": "unknown",
        "devices": [],
        "device_count": 0,
        "float64": False,
        "compiling": _compiling > 0,
        "version": getattr(odelab, "__version__", ""),
    }
    try:
        import jax

        devices = jax.devices()
        status.update(
            backend=jax.default_backend(),
            devices=[f"{device.platform}:{device.id} {device.device_kind}" for device in devices],
            device_count=len(devices),
            float64=bool(jax.config.read("jax_enable_x64")),
        )
    except Exception as error:  # a broken backend is worth showing, not raising
        status["backend"] = f"unavailable ({type(error).__name__})"
    return status


class _Throttle:
    """Call ``action`` now if it has not run for ``interval`` seconds, else once when it may."""

    def __init__(self, action: Callable[[], None], interval: float, schedule: Callable):
        self._action = action
        self._interval = interval
        self._schedule = schedule
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._pending = False

    def __call__(self) -> None:
        with self._lock:
            if self._pending:
                return
            wait = self._last + self._interval - time.monotonic()
            if wait > 0:
                self._pending = True
                self._schedule(wait, self._fire)
                return
            self._last = time.monotonic()
        self._action()

    def _fire(self) -> None:
        with self._lock:
            self._pending = False
            self._last = time.monotonic()
        self._action()


def _timer(delay: float, callback: Callable[[], None]) -> None:
    timer = threading.Timer(delay, callback)
    timer.daemon = True
    timer.start()


class LabBridge:
    """Serves the front ends connected through comms: answers requests, pushes changes.

    ``comm`` objects need ``send(data)``, ``on_msg(callback)``, ``on_close(callback)`` and
    ``close()``, like those of the ``comm`` package; tests pass fakes.
    """

    def __init__(
        self,
        registry: _registry.Registry | None = None,
        *,
        render: Callable[[Any, bool], list[dict]] | None = None,
        schedule: Callable[[float, Callable[[], None]], None] = _timer,
        interval: float = PUSH_INTERVAL_S,
    ):
        self.registry = registry if registry is not None else _registry.default_registry
        self._render = render or display_outputs
        self._comms: list[Any] = []
        self._lock = threading.Lock()
        self._push_items = _Throttle(self._send_items, interval, schedule)
        self._push_status = _Throttle(self._send_status, interval, schedule)
        self.registry.subscribe(self._on_registry_change)

    # -- connections -----------------------------------------------------------------------------

    def attach(self, comm: Any, open_data: Any = None) -> None:
        """Serve ``comm``; ``open_data`` is the request that came with its opening, if any."""
        with self._lock:
            self._comms.append(comm)
            stale, self._comms = self._comms[:-_MAX_COMMS], self._comms[-_MAX_COMMS:]
        for old in stale:
            _close_quietly(old)
        comm.on_msg(lambda msg, comm=comm: self.handle(comm, _message_data(msg)))
        comm.on_close(lambda _msg, comm=comm: self._detach(comm))
        if open_data:
            self.handle(comm, open_data)

    @property
    def comms(self) -> list[Any]:
        with self._lock:
            return list(self._comms)

    def close(self) -> None:
        self.registry.unsubscribe(self._on_registry_change)
        for comm in self.comms:
            _close_quietly(comm)
        with self._lock:
            self._comms.clear()

    def _detach(self, comm: Any) -> None:
        with self._lock:
            if comm in self._comms:
                self._comms.remove(comm)

    # -- requests --------------------------------------------------------------------------------

    def handle(self, comm: Any, data: Any) -> None:
        """Answer one message from the front end; malformed ones get an error reply only."""
        try:
            request = validate_request(data)
        except Exception as error:  # CommMessageError; anything else is a gap in the schema
            if not isinstance(error, CommMessageError):
                _logger.exception("odelab: checking a message failed")
                error = f"{type(error).__name__}: {error}"
            seq = data.get("seq") if isinstance(data, dict) else None
            seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
            self._reply(comm, {"type": "error", "message": f"ignored a message: {error}"}, seq)
            return
        try:
            self._answer(comm, request)
        except Exception as error:  # never let a request crash the kernel's comm handler
            _logger.exception("odelab: request %r failed", request.type)
            message = f"{request.type} failed: {type(error).__name__}: {error}"
            self._reply(comm, {"type": "error", "message": message}, request.seq)

    def _answer(self, comm: Any, request: Request) -> None:
        if request.type in ("hello", "list"):
            self._reply(comm, self._items_message(), request.seq)
        if request.type in ("hello", "status"):
            self._reply(comm, {"type": "status", "status": environment_status()}, request.seq)
        if request.type == "hello":
            self._reply(comm, {"type": "capabilities", **capabilities()}, request.seq)
            self._reply(comm, {"type": "defaults", "defaults": lab_defaults()}, request.seq)
        if request.type == "settings":
            try:  # the same checks as the arguments of ol.solve, before anything is kept
                set_session_defaults(**request.settings)
            except OdelabError as error:
                self._reply(comm, _error(f"settings refused, nothing changed: {error}"),
                            request.seq)
                return
            self._reply(comm, {"type": "defaults", "defaults": lab_defaults()}, request.seq)
        if request.type == "open_explorer":
            self._reply(comm, self._explorer(request.id), request.seq)
        if request.type == "check_gradient":
            self._reply(comm, self._gradient_check(request.id), request.seq)

    def _item(self, item_id: str) -> tuple[Any, dict] | dict:
        """The live object and its description, or an error message."""
        info = self.registry.info(item_id)
        obj = self.registry.get(item_id)
        if info is None or obj is None:
            return _error(
                f"no live odelab object has the id {item_id!r}; it may have been deleted."
            )
        return obj, info

    def _explorer(self, item_id: str) -> dict:
        found = self._item(item_id)
        if isinstance(found, dict):
            return found
        obj, info = found
        if info["kind"] != "system":
            return _error(
                f"{info['name']!r} is a {info['kind']}: the explorer opens systems (for an "
                f"objective, check its gradient)."
            )
        explore = _library_function("explore")
        view = explore(obj) if explore is not None else _summary_pane(info)
        return {
            "type": "display",
            "action": "open_explorer",
            "id": item_id,
            "title": f"Explorer: {info['name']}",
            "outputs": self._render(view, True),
        }

    def _gradient_check(self, item_id: str) -> dict:
        check_gradient = _library_function("check_gradient")
        if check_gradient is None:
            return _error("this odelab has no check_gradient yet; upgrade odelab to use it.")
        found = self._item(item_id)
        if isinstance(found, dict):
            return found
        obj, info = found
        objective_id = info.get("objective_id")
        if info["kind"] == "fit" and isinstance(objective_id, str):
            found = self._item(objective_id)  # a fit is checked through the loss it fits
            if isinstance(found, dict):
                return found
            (obj, info), item_id = found, objective_id
        if callable(getattr(obj, "check_gradient", None)):
            report = obj.check_gradient()
        elif callable(getattr(obj, "fun", None)) and hasattr(obj, "params"):
            # the same check as the user's last one on this objective (methods, rtols, ...)
            report = check_gradient(obj.fun, obj.params, **(getattr(obj, "options", None) or {}))
        else:
            return _error(
                f"{info['name']!r} is a {info['kind']}, not an objective: a gradient check needs "
                f"a loss function and parameters (an item with .fun and .params)."
            )
        return {
            "type": "display",
            "action": "check_gradient",
            "id": item_id,
            "title": f"Gradient check: {info['name']}",
            "outputs": self._render(report, False),
        }

    # -- pushes ----------------------------------------------------------------------------------

    def status_changed(self) -> None:
        self._push_status()

    def _on_registry_change(self, _item_id: str | None) -> None:
        self._push_items()

    def _items_message(self) -> dict:
        return {"type": "items", "items": self.registry.items()}

    def _send_items(self) -> None:
        message = self._items_message()
        for comm in self.comms:
            self._reply(comm, message, None)

    def _send_status(self) -> None:
        message = {"type": "status", "status": environment_status()}
        for comm in self.comms:
            self._reply(comm, message, None)

    def _reply(self, comm: Any, message: dict, seq: int | None) -> None:
        if seq is not None:
            message = {**message, "seq": seq}
        try:
            comm.send(message)
        except Exception:  # a closed front end must not break the others
            _logger.debug("odelab: dropping a closed comm", exc_info=True)
            self._detach(comm)


def _library_function(name: str) -> Callable | None:
    """``odelab.<name>`` if this version of odelab has it (public names load lazily)."""
    odelab = sys.modules.get("odelab")
    try:
        function = getattr(odelab, name, None)
    except ImportError:  # a lazily imported module that is not there (yet)
        return None
    return function if callable(function) else None


def _error(message: str) -> dict:
    return {"type": "error", "message": message}


def _message_data(msg: Any) -> Any:
    try:
        return msg["content"]["data"]
    except (KeyError, TypeError):
        return None


def _close_quietly(comm: Any) -> None:
    try:
        comm.close()
    except Exception:
        _logger.debug("odelab: closing a comm failed", exc_info=True)


def _summary_markdown(info: dict) -> str:
    """A readable summary of one item, used until the interactive explorer is available."""
    rows = [("kind", info.get("kind"))]
    for key, label in (
        ("states", "states"),
        ("params", "parameters"),
        ("last_solver", "last solver"),
        ("last_method", "last gradient method"),
        ("verdict", "verdict"),
        ("run_time_s", "run time (s)"),
        ("compile_time_s", "compile time (s)"),
        ("n_compiles", "compilations"),
    ):
        value = info.get(key)
        if value is None or value == [] or value == {}:
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k} = {v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        rows.append((label, value))
    lines = [f"### {html.escape(str(info['name']))}", "", "| | |", "|---|---|"]
    lines += [f"| {label} | {html.escape(str(value))} |" for label, value in rows]
    return "\n".join(lines)


def _summary_pane(info: dict) -> Any:
    import panel as pn

    return pn.pane.Markdown(_summary_markdown(info), sizing_mode="stretch_width")


def _ensure_panel_inline() -> None:
    # Offline there is no CDN: Panel's and Bokeh's JavaScript must travel inline, and must work
    # in a page that already shows plain Bokeh plots (odelab.ui.notebook says why).
    from ..ui.notebook import load_extension

    load_extension()


def display_outputs(obj: Any, needs_panel: bool) -> list[dict]:
    """What a notebook cell would show for ``obj``, as display_data outputs.

    For Panel objects the loading outputs (Bokeh/Panel JavaScript, inline) come first, so the tab
    renders even if no cell of the notebook loaded Panel.
    """
    from IPython import get_ipython
    from IPython.utils.capture import capture_output

    shell = get_ipython()
    if shell is None:
        raise RuntimeError("showing views needs an IPython kernel")
    with capture_output(stdout=False, stderr=False) as captured:
        if needs_panel:
            _ensure_panel_inline()
        data, metadata = shell.display_formatter.format(obj)
    shown = [(out.data, out.metadata) for out in captured.outputs] + [(data, metadata)]
    return [
        {"output_type": "display_data", "data": data, "metadata": metadata or {}}
        for data, metadata in shown
        if data  # Panel publishes some empty bundles; they would render as blank space
    ]


def _kernel_comm_manager() -> Any:
    """The comm manager of the running IPython kernel, or None outside a kernel."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    import comm

    return comm.get_comm_manager()


def activate() -> LabBridge | None:
    """Connect to JupyterLab if running in a kernel; idempotent, silent elsewhere."""
    global _bridge
    if _bridge is not None:
        return _bridge
    try:
        manager = _kernel_comm_manager()
        if manager is None:
            return None
        bridge = LabBridge()
        bridge.feed = _feed.connect(bridge.registry)
        _events.subscribe(_events.COMPILING, _on_compiling)
        manager.register_target(
            COMM_TARGET, lambda comm, msg: bridge.attach(comm, _message_data(msg))
        )
        _bridge = bridge
        import comm

        # Announce ourselves: a front end that already listens attaches at once.
        bridge.attach(
            comm.create_comm(target_name=COMM_TARGET, data={"protocol": PROTOCOL_VERSION})
        )
    except Exception:  # the library must work even if the lab connection cannot be made
        _logger.warning("odelab: could not connect to JupyterLab", exc_info=True)
    return _bridge
