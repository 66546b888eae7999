"""`odelab serve MODULE:OBJECT`: the explorer as a standalone web page (a classroom projector).

MODULE:OBJECT names a System, an Objective, an Explorer, or a function returning one of those,
e.g. ``odelab serve mymodels:pendulum``. A bare gallery name works too: ``odelab serve lorenz``.
The page is served by Panel's Bokeh server with its own JavaScript, so it works without internet
access.

Who can reach it:
  * By default the server listens on the loopback interface only (``localhost``) and answers
    only requests addressed to a loopback name, so other machines, and web pages that rebind a
    DNS name to 127.0.0.1, cannot use it.
  * ``--host 0.0.0.0`` (or a given address) opens it to the network. It then requires a token,
    as Jupyter does: the printed link carries ``?token=…``; opening it stores a login cookie for
    this server, and anyone without the token is sent to a page asking for it. Only pages served
    from this machine's names and addresses (and those given with ``--allow-websocket-origin``)
    may open the explorer's websocket.

Each browser session gets its own explorer; System and Objective targets are built once and
their compiled programs are shared by all sessions. A session ends about a second after its
tab closes (a page that never connects its websocket: after ``session_expiry`` seconds), and
everything tied to it is released: the explorer's worker thread, its plots, the Bokeh document.
At most ``max_sessions`` sessions run at once; a page opened beyond that gets a short "busy, try
again shortly" page instead.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import hashlib
import hmac
import html
import importlib
import ipaddress
import logging
import secrets
import socket
import sys
import threading
import webbrowser
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from .._errors import InputError, OdelabError
from ..system import Objective, System, as_objective
from .compute import Engine
from .explorer import Explorer

DEFAULT_PORT = 5006
DEFAULT_HOST = "localhost"
DEFAULT_MAX_SESSIONS = 32
DEFAULT_SESSION_EXPIRY = 10.0  # seconds a page has to connect (and a session without a tab lives)
MIN_SESSION_EXPIRY = 2.0
CLOSED_TAB_GRACE_MS = 500  # a session whose tab closed ends about this long after
CHECK_INTERVAL_MS = 250
APP_PATH = "/odelab"
LOGIN_PATH = "/login"
RETRY_AFTER_S = 30

log = logging.getLogger("odelab.serve")


# --------------------------------------------------------------------------------------------
# what is served
# --------------------------------------------------------------------------------------------
def _resolve(target: str) -> Any:
    """The object `target` ("module:attr" or a gallery name) refers to."""
    if ":" not in target:
        from ..gallery import GALLERY

        if target in GALLERY:
            return GALLERY[target]
        raise InputError(
            f"`{target}` is neither MODULE:OBJECT nor a gallery system. Give e.g. "
            f"mymodule:my_system, or one of: {', '.join(sorted(GALLERY))}."
        )
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise InputError(
            f"Could not import module {module_name!r} ({err}). Run odelab serve from the folder "
            "that contains it, or put it on PYTHONPATH."
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"Module {module_name!r} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    return obj


# what an explorer shows rather than what its controls say
_EXPLORER_OUTPUTS = {"name", "status", "status_level", "busy", "busy_text", "progress", "stats",
                     "dropped", "stage_status"}


class _Target:
    """The served object, resolved once; `new_explorer()` gives each session its explorer.

    A System or an Objective (or a function returning one) is built once, and every session's
    explorer computes with one shared Engine: the second visitor reuses the programs the first
    one compiled, and the server's memory does not grow with the number of visits. A function
    returning an Explorer is called once per session. An Explorer object serves as the template
    of each session's explorer (same objective, engine and settings): one explorer shown in
    several sessions would lose its page connections when the first of them ends.
    """

    def __init__(self, target: str):
        self.name = target
        obj = _resolve(target)
        value = obj() if callable(obj) and not isinstance(obj, (System, Objective, Explorer)) \
            else obj
        self._make: Callable[[], Any] | None = None
        self._spare: Any = None
        self._objective = self._engine = None
        self._settings: dict[str, Any] = {}
        if isinstance(value, (System, Objective)):
            self._objective = as_objective(value)
            self._engine = Engine(self._objective)
        elif isinstance(value, Explorer) and value is obj:
            self._objective, self._engine = value.objective, value.engine
            self._settings = {k: v for k, v in value.param.values().items()
                              if k not in _EXPLORER_OUTPUTS}
        elif isinstance(value, Explorer):
            self._make = obj
            self._spare = value  # the explorer built to check the target serves the first visit
        else:
            raise InputError(
                f"`{target}` gave a {type(value).__name__}; odelab serve needs a System, an "
                "Objective, an Explorer or a function returning one."
            )

    def new_explorer(self) -> Any:
        if self._objective is not None:
            # a worker thread keeps the page responsive (busy indicator) while programs compile
            return Explorer(self._objective, engine=self._engine,
                            **{**self._settings, "background": True})
        if self._spare is not None:
            explorer, self._spare = self._spare, None
            return explorer
        value = self._make()
        if not isinstance(value, Explorer):
            raise InputError(f"`{self.name}` gave a {type(value).__name__} instead of an Explorer.")
        return value


def explorer_factory(target: str) -> Callable[[], Any]:
    """A function building an explorer per browser session for `target` (checked right away)."""
    return _Target(target).new_explorer


# --------------------------------------------------------------------------------------------
# sessions: count, cap, release
# --------------------------------------------------------------------------------------------
class SessionBook:
    """The live browser sessions of one server: their explorers, the cap, and the clean-up.

    A session counts from the moment its page is requested until Bokeh destroys it (about a
    second after its tab closed; `session_expiry` after the page arrived if its websocket never
    connected). Its explorer is closed then (unless another live session shows the same
    explorer), and the memory is collected and handed back to the operating system.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.opened = 0
        self.closed = 0
        self.refused = 0
        self._explorers: dict[int, Any] = {}  # session number -> explorer
        self._bokeh_ids: dict[int, str] = {}  # session number -> Bokeh session id
        self._open: set[int] = set()  # numbers given out and not yet ended
        self._connected: set[int] = set()  # sessions whose tab has connected
        self._lock = threading.Lock()
        self._collect_scheduled = False
        self.loop: Any = None  # the server's tornado IOLoop, once serving

    @property
    def live(self) -> int:
        return self.opened - self.closed

    def full(self) -> bool:
        return self.live >= self.limit

    def reserve(self) -> int | None:
        """A session number, or None (and one more refusal) when the cap is reached."""
        with self._lock:
            if self.full():
                self.refused += 1
                number = None
            else:
                self.opened += 1
                number = self.opened
                self._open.add(number)
        if number is None:
            log.warning("refused a session: %d of %d sessions in use", self.live, self.limit)
        return number

    def attach(self, number: int, explorer: Any, bokeh_id: str | None = None) -> None:
        with self._lock:
            self._explorers[number] = explorer
            if bokeh_id is not None:
                self._bokeh_ids[number] = bokeh_id
        log.info("session %d opened (%d of %d live)", number, self.live, self.limit)

    def end_disconnected(self, server: Any, grace_ms: float) -> None:
        """Ask Bokeh to end the sessions whose tab connected and has since gone.

        Bokeh keeps a session without connections for the unused-session lifetime, which must
        be long enough for a slow page to connect its websocket in the first place; a tab that
        was there and closed needs no such wait, so its session (and its place under the cap)
        is given back about `grace_ms` after the tab went.
        """
        with self._lock:
            watched = list(self._bokeh_ids.items())
        for number, bokeh_id in watched:
            try:
                session = server.get_session(APP_PATH, bokeh_id)
            except Exception:  # already discarded
                continue
            if session.connection_count > 0:
                self._connected.add(number)
            elif (number in self._connected and not session.expiration_requested
                  and session.milliseconds_since_last_unsubscribe > grace_ms):
                session.request_expiration()

    def end(self, number: int) -> None:
        """Session `number` is gone: close its explorer (if no other session shows it)."""
        with self._lock:
            if number not in self._open:  # ended already (a second destroy notification)
                return
            self._open.discard(number)
            explorer = self._explorers.pop(number, None)
            self._bokeh_ids.pop(number, None)
            self._connected.discard(number)
            self.closed += 1
            still_shown = any(e is explorer for e in self._explorers.values())
        if explorer is not None and not still_shown:
            explorer.close(wait=False)  # never block the server on a computation in flight
        del explorer
        log.info("session %d closed (%d of %d live)", number, self.live, self.limit)
        self._schedule_collect()

    def _schedule_collect(self) -> None:
        if self.loop is None:  # not serving (a script, a test): collect now
            self._collect()
        elif not self._collect_scheduled:
            self._collect_scheduled = True
            # after Bokeh and Panel have finished tearing the document down
            self.loop.call_later(0.3, self._collect)

    def _collect(self) -> None:
        self._collect_scheduled = False
        gc.collect()
        _return_free_memory()
        log.info("collected the memory of ended sessions (%d live)", self.live)


def _return_free_memory() -> None:
    """Give freed heap pages back to the operating system (glibc keeps them otherwise).

    The explorers' worker threads allocate in their own malloc arenas; without this the freed
    memory of ended sessions stays in the process's resident size.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, Windows, musl): nothing to do
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def _page(body: str, title: str, status_text: str = "") -> str:
    """A small self-contained HTML page (no external resources)."""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{title}"
        "</title><style>body{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;"
        "padding:0 1em;line-height:1.5;color:#222}input{font-size:1em;padding:.3em;width:24em;"
        "max-width:100%}button{font-size:1em;padding:.3em 1em}.note{color:#a33}</style></head>"
        f"<body><h1>{title}</h1>{status_text}{body}</body></html>"
    )


def busy_message(limit: int) -> str:
    """What a visitor beyond the session cap reads (an HTML fragment)."""
    return (
        f"<p>This odelab server runs at most {limit} explorer sessions at a time, and all of "
        "them are in use.</p><p>Close an explorer tab you no longer need (its place is free a "
        "few seconds later), or try again in a minute.</p>"
    )


# --------------------------------------------------------------------------------------------
# access: loopback names, and a token when the server is open to the network
# --------------------------------------------------------------------------------------------
def _is_loopback_name(name: str) -> bool:
    name = name.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps the server on this machine (every address loopback)."""
    if _is_loopback_name(host):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
        return False  # an address that is not loopback (0.0.0.0 and :: included)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def _request_host_name(host_header: str) -> str:
    """The host name of a Host header ("[::1]:5006" -> "::1", "localhost:5006" -> "localhost")."""
    return urlsplit(f"//{host_header}").hostname or ""


def _login_handler() -> type:
    """The page asking for the token (or explaining why a loopback-only server said no)."""
    from tornado.web import RequestHandler

    class LoginHandler(RequestHandler):
        def _next(self) -> str:
            target = self.get_argument("next", APP_PATH)
            # only paths on this server: never an open redirect
            return target if target.startswith("/") and not target.startswith("//") \
                else APP_PATH

        def _form(self, note: str = "") -> None:
            access = self.application.auth_provider
            if access.token is None:  # loopback-only server, asked with a foreign Host name
                self.set_status(403)
                self.finish(_page(
                    "<p>This odelab server only answers requests addressed to this "
                    "machine's loopback names (localhost, 127.0.0.1). To open it to other "
                    "machines, restart it with <code>--host 0.0.0.0</code>; it then "
                    "requires a token.</p>", "odelab: not available at this address"))
                return
            if note:
                self.set_status(403)
            self.finish(_page(
                "<p>This odelab server needs its token. Open the link printed in the "
                "terminal where <code>odelab serve</code> runs (it ends in "
                "<code>?token=…</code>), or paste the token here:</p>"
                f"<form method='post' action='{html.escape(LOGIN_PATH)}'>"
                f"<input type='hidden' name='next' value='{html.escape(self._next())}'>"
                "<input type='password' name='token' autofocus aria-label='token'> "
                "<button type='submit'>Open</button></form>",
                "odelab: token needed",
                f"<p class='note'>{html.escape(note)}</p>" if note else ""))

        def get(self) -> None:
            self._form()

        def post(self) -> None:
            access = self.application.auth_provider
            if access.token_matches(self.get_body_argument("token", None)):
                access.remember(self)
                self.redirect(self._next())
                return
            self._form("Wrong token: that is not the token of this server.")

    return LoginHandler


def _access_provider(token: str | None, local_only: bool) -> Any:
    """A Bokeh AuthProvider admitting loopback Host names and, when `token` is set, its holders.

    The token is accepted from `?token=` in the URL, an `Authorization: token …` header, or the
    login form; a browser that presented it gets an HttpOnly cookie (an HMAC of the token under
    a key that lives as long as the server), which also admits its websocket. Static files
    (Bokeh's and Panel's JavaScript) stay public, as Jupyter's do.
    """
    from bokeh.server.auth_provider import AuthProvider

    login_handler = _login_handler()

    class Access(AuthProvider):
        def __init__(self) -> None:
            self.token = token
            self.local_only = local_only
            self.cookie_name = "odelab-auth"  # made per port once the server is bound
            self._cookie = hmac.new(secrets.token_bytes(32), (token or "").encode(),
                                    hashlib.sha256).hexdigest()
            super().__init__()

        @property
        def get_user(self) -> Callable[[Any], str | None]:
            return self.user

        @property
        def login_url(self) -> str:
            return LOGIN_PATH

        @property
        def login_handler(self) -> type:
            return login_handler

        def token_matches(self, given: str | None) -> bool:
            return self.token is not None and given is not None and hmac.compare_digest(
                given.encode(), self.token.encode())

        def remember(self, handler: Any) -> None:
            handler.set_cookie(self.cookie_name, self._cookie, httponly=True, samesite="Lax")

        def user(self, handler: Any) -> str | None:
            request = handler.request
            if self.local_only and not _is_loopback_name(_request_host_name(request.host)):
                return None  # e.g. a web page that rebound its DNS name to 127.0.0.1
            if self.token is None:
                return "local"
            given = handler.get_query_argument("token", None)
            header = request.headers.get("Authorization", "")
            if given is None and header.lower().startswith("token "):
                given = header[6:].strip()
            if self.token_matches(given):
                if not hasattr(handler, "ws_connection"):  # a page: remember this browser
                    self.remember(handler)
                return "token"
            cookie = handler.get_cookie(self.cookie_name)
            if cookie is not None and hmac.compare_digest(cookie.encode(), self._cookie.encode()):
                return "token"
            return None

    return Access()


def _this_machine_names() -> set[str]:
    """Names and addresses other machines may use to reach this one (for the origin list)."""
    names = {socket.gethostname(), socket.getfqdn()}
    for name in list(names):
        try:
            names |= {i[4][0] for i in socket.getaddrinfo(name, None)}
        except OSError:
            pass
    try:  # the address of the default route's interface (connecting a UDP socket sends nothing)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))
            names.add(probe.getsockname()[0])
    except OSError:
        pass
    return {n for n in names if n}


def websocket_origins(host: str, port: int, extra: list[str] | None = None) -> list[str]:
    """The `host:port` values whose pages may open the explorer's websocket."""
    names = {"localhost", "127.0.0.1", "::1"}
    if not host_is_loopback(host):
        unspecified = host.strip("[]") in ("0.0.0.0", "::", "")
        names |= _this_machine_names() if unspecified else {host.strip("[]")}
    origins = {f"[{n}]:{port}" if ":" in n else f"{n}:{port}" for n in names}
    for item in extra or []:
        item = item.strip()
        if not item:
            continue
        origins.add(item if ":" in item.lstrip("[").split("]")[-1] else f"{item}:80")
    return sorted(origins)


# --------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------
class Served:
    """A running `odelab serve` server: where it is, who may use it, its sessions.

    url: the link to open (with the token when one is needed); sessions: the SessionBook;
    origins: the websocket origin allow-list. `stop()` stops a threaded server.
    """

    def __init__(self, server: Any, *, target: str, host: str, token: str | None,
                 sessions: SessionBook, origins: list[str], thread: threading.Thread | None):
        self.server = server
        self.target = target
        self.host = host
        self.port: int = server.port
        self.token = token
        self.sessions = sessions
        self.origins = origins
        self._thread = thread

    def urls(self) -> list[str]:
        query = f"?token={quote(self.token)}" if self.token else ""
        if host_is_loopback(self.host):
            hosts = [self.host]
        elif self.host.strip("[]") in ("0.0.0.0", "::", ""):
            hosts = [socket.gethostname(), "127.0.0.1"]
        else:
            hosts = [self.host]
        return [f"http://{f'[{h}]' if ':' in h else h}:{self.port}{APP_PATH}{query}"
                for h in hosts]

    @property
    def url(self) -> str:
        return self.urls()[0]

    def stop(self) -> None:
        """Stop the server (threaded=True) and wait for its thread."""
        loop = self.server.io_loop

        def shutdown() -> None:
            self.server.stop()
            loop.stop()

        loop.add_callback(shutdown)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def banner(self) -> str:
        lines = [f"odelab serve: the explorer of {self.target!r} is at"]
        lines += [f"    {u}" for u in self.urls()]
        if self.token:
            lines.append("  Anyone with this link can use the explorer (the token is its key).")
            lines.append("  Pages from these origins may open its websocket: "
                         + ", ".join(self.origins)
                         + " (add more with --allow-websocket-origin HOST:PORT).")
        else:
            lines.append("  Only this machine can open it; use --host 0.0.0.0 to open it to "
                         "the network (a token is then required).")
        lines.append(f"  At most {self.sessions.limit} sessions at a time. Stop with Ctrl-C.")
        return "\n".join(lines)


def _check_options(port: Any, host: Any, max_sessions: Any, session_expiry: Any,
                   token: Any) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"`port={port!r}` must be a whole number from 0 to 65535 (0: any free "
                         "port).")
    if not isinstance(host, str) or not host.strip():
        raise InputError(f"`host={host!r}` must be an address or name to listen on, e.g. "
                         "localhost (the default) or 0.0.0.0 (every interface).")
    if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1:
        raise InputError(f"`max_sessions={max_sessions!r}` must be a whole number of at least 1.")
    if isinstance(session_expiry, bool) or not isinstance(session_expiry, (int, float)) \
            or not MIN_SESSION_EXPIRY <= session_expiry <= 86400:
        raise InputError(
            f"`session_expiry={session_expiry!r}` must be seconds between {MIN_SESSION_EXPIRY:g} "
            "and 86400: the time a page has to connect after it arrived (a session nobody "
            "connected to in that time ends, and its page stops working).")
    if token is not None and (not isinstance(token, str) or len(token) < 8
                              or not token.isprintable() or " " in token):
        raise InputError("`token` must be at least 8 printable characters without spaces; leave "
                         "it out to get a random one.")


def serve(target: str, port: int = DEFAULT_PORT, show: bool = False, address: str | None = None,
          *, host: str | None = None, token: str | None = None,
          allow_websocket_origin: list[str] | None = None,
          max_sessions: int = DEFAULT_MAX_SESSIONS,
          session_expiry: float = DEFAULT_SESSION_EXPIRY, threaded: bool = False,
          quiet: bool = False) -> Served:
    """Serve the explorer of `target` ("MODULE:OBJECT" or a gallery name) on `port`.

    host: where to listen: "localhost" (default, this machine only) or an address such as
      "0.0.0.0" (every interface); `address` is an older name for it. Unless every address of
      `host` is loopback, a token is required (`token`, or a random one printed in the link).
    allow_websocket_origin: more "host:port" values whose pages may use the websocket (behind
      a proxy, say). max_sessions: sessions running at once. session_expiry: seconds a page
      has to connect its websocket after it arrived (a session whose tab closed ends after
      about a second either way). show: open a browser tab.

    Blocks until stopped (Ctrl-C); with `threaded=True` it returns the running server instead
    (`.url`, `.sessions`; stop it with `.stop()`).
    """
    if host is not None and address is not None and host != address:
        raise InputError("Give `host` (or its older name `address`), not both.")
    host = host if host is not None else (address if address is not None else DEFAULT_HOST)
    _check_options(port, host, max_sessions, session_expiry, token)
    local_only = host_is_loopback(host)
    if not local_only and token is None:
        token = secrets.token_hex(24)
    served_target = _Target(target)  # fails now, in the terminal, not in the first session
    sessions = SessionBook(max_sessions)

    def start(loop: Any) -> Served:
        server = _build_server(served_target, sessions, loop=loop, port=port, host=host,
                               token=token, local_only=local_only,
                               extra_origins=allow_websocket_origin,
                               session_expiry=session_expiry)
        return Served(server, target=target, host=host, token=token, sessions=sessions,
                      origins=sorted(server._tornado.websocket_origins),
                      thread=threading.current_thread() if threaded else None)

    if not threaded:
        from tornado.ioloop import IOLoop

        served = start(IOLoop.current())
        _announce(served, show, quiet)
        served.server.start()
        try:
            served.server.io_loop.start()
        except KeyboardInterrupt:
            pass
        return served
    return _start_thread(start, show, quiet)


def _start_thread(start: Callable[[Any], Served], show: bool, quiet: bool) -> Served:
    from tornado.ioloop import IOLoop

    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        loop = IOLoop(make_current=False)  # Panel makes it this thread's loop
        try:
            served = start(loop)
        except BaseException as err:  # reported to the caller below
            box["error"] = err
            ready.set()
            loop.close()
            return
        box["served"] = served
        served.server.start()
        _announce(served, show, quiet)
        ready.set()
        loop.start()
        loop.close(all_fds=True)

    thread = threading.Thread(target=run, name="odelab-serve", daemon=True)
    thread.start()
    ready.wait()
    if "error" in box:
        raise box["error"]
    served = box["served"]
    served._thread = thread
    return served


def _announce(served: Served, show: bool, quiet: bool) -> None:
    if not quiet:
        print(served.banner(), flush=True)
    if show:
        served.server.io_loop.add_callback(webbrowser.open, served.url)


def _build_server(target: _Target, sessions: SessionBook, *, loop: Any, port: int, host: str,
                  token: str | None, local_only: bool, extra_origins: list[str] | None,
                  session_expiry: float) -> Any:
    import panel as pn
    from panel.io.server import get_server
    from tornado.ioloop import PeriodicCallback

    pn.config.inline = True  # the page loads nothing from a CDN

    def session_page() -> Any:
        number = sessions.reserve()
        if number is None:  # requests that got past the page handler's check at the same time
            return pn.pane.HTML(busy_message(sessions.limit))
        try:
            explorer = target.new_explorer()
        except BaseException:
            sessions.end(number)
            raise
        context = pn.state.curdoc.session_context if pn.state.curdoc is not None else None
        sessions.attach(number, explorer, getattr(context, "id", None))
        # the callback holds the session number only: no reference to the explorer remains
        pn.state.on_session_destroyed(lambda _context, n=number: sessions.end(n))
        return explorer.__panel__()

    expiry_ms = int(session_expiry * 1000)
    check_ms = min(expiry_ms // 4, CHECK_INTERVAL_MS)
    access = _access_provider(token, local_only)
    server = get_server(
        {APP_PATH.strip("/"): session_page}, port=port, address=host, loop=loop, start=False,
        show=False, verbose=False, title=f"odelab: {target.name}", location=False,
        websocket_origin=None,
        auth_provider=access,
        unused_session_lifetime_milliseconds=expiry_ms,
        check_unused_sessions_milliseconds=check_ms,
    )
    # the cookie name and the origin list need the port actually bound (port=0: a free one);
    # cookies are shared by all ports of a host, hence the port in the name
    access.cookie_name = f"odelab-auth-{server.port}"
    allowed = server._tornado.websocket_origins  # the set Bokeh checks each websocket against
    allowed.clear()
    allowed.update(websocket_origins(host, server.port, extra_origins))
    _cap_page_requests(server, sessions)
    sessions.loop = server.io_loop
    watch = PeriodicCallback(lambda: sessions.end_disconnected(server, CLOSED_TAB_GRACE_MS),
                             check_ms)
    server.io_loop.add_callback(watch.start)  # runs on the server's loop, stops with it
    return server


def _cap_page_requests(server: Any, sessions: SessionBook) -> None:
    """Answer page requests beyond the session cap with a readable 503 page.

    The page handler creates the Bokeh session (and so the explorer) before anything of ours
    runs; refusing here, before that, costs the server nothing.
    """
    from bokeh.server.views.doc_handler import DocHandler

    rules = [r for r in server._tornado.wildcard_router.rules
             if isinstance(r.target, type) and issubclass(r.target, DocHandler)]
    if not rules:
        raise RuntimeError("odelab serve: the Bokeh page handler was not found (a Bokeh or "
                           "Panel version odelab does not know?).")
    for rule in rules:
        base = rule.target

        class CappedDocHandler(base):  # type: ignore[misc, valid-type]
            async def get(self, *args: Any, **kwargs: Any) -> None:
                if sessions.full() and self.current_user is not None:
                    sessions.refused += 1
                    log.warning("refused a page: %d of %d sessions in use", sessions.live,
                                sessions.limit)
                    self.set_status(503)
                    self.set_header("Retry-After", str(RETRY_AFTER_S))
                    self.set_header("Content-Type", "text/html; charset=utf-8")
                    self.set_header("Cache-Control", "no-store")
                    self.finish(_page(busy_message(sessions.limit)
                                      + "<p><a href=''>Try again</a></p>", "odelab is busy"))
                    return
                # tornado's @authenticated returns None when it redirected to the login page
                pending = super().get(*args, **kwargs)
                if pending is not None:
                    await pending

        rule.target = CappedDocHandler


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def cli_serve(argv: list[str] | None = None) -> int:
    """`odelab serve` from the command line; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="odelab serve",
        description="Serve the odelab explorer of a system as a web page. By default only this "
                    "machine can open it; --host 0.0.0.0 opens it to the network, behind a "
                    "token.",
    )
    parser.add_argument("target", help="MODULE:OBJECT (a System, Objective, Explorer or a "
                                       "function returning one) or a gallery name, e.g. lorenz")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--host", default=None,
                        help="address to listen on (default localhost: this machine only; "
                             "0.0.0.0 or :: for every interface, which requires a token)")
    parser.add_argument("--address", default=None, help=argparse.SUPPRESS)  # the older name
    parser.add_argument("--token", default=None,
                        help="the token visitors need (default: none on localhost; with "
                             "--host, a random one, printed in the link)")
    parser.add_argument("--allow-websocket-origin", action="append", default=[],
                        metavar="HOST[:PORT]",
                        help="also accept the websocket from pages served at HOST[:PORT] (a "
                             "proxy's name, say); repeat for several")
    parser.add_argument("--max-sessions", type=int, default=DEFAULT_MAX_SESSIONS,
                        help=f"browser sessions at once (default {DEFAULT_MAX_SESSIONS})")
    parser.add_argument("--session-expiry", type=float, default=DEFAULT_SESSION_EXPIRY,
                        metavar="SECONDS",
                        help="how long a page may take to connect after it arrived before "
                             "its session is dropped (default "
                             f"{DEFAULT_SESSION_EXPIRY:g}; a closed tab's session ends within "
                             "seconds regardless)")
    parser.add_argument("--show", action="store_true", help="open a browser tab")
    parser.add_argument("--quiet", action="store_true",
                        help="no log line per session opened or closed")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("odelab serve %(asctime)s: %(message)s", "%H:%M:%S"))
    if not args.quiet:
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    try:
        serve(args.target, port=args.port, show=args.show,
              host=args.host if args.host is not None else args.address, token=args.token,
              allow_websocket_origin=args.allow_websocket_origin,
              max_sessions=args.max_sessions, session_expiry=args.session_expiry)
    except OdelabError as err:
        print(f"odelab serve: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the port is taken, the address is not this machine's, ...
        print(f"odelab serve: cannot listen on {args.host or DEFAULT_HOST}:{args.port} ({err}). "
              "Choose another --port (0 picks a free one) or --host.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        log.removeHandler(handler)
    return 0


__all__ = ["DEFAULT_PORT", "Served", "SessionBook", "cli_serve", "explorer_factory", "serve"]
