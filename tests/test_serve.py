"""`odelab serve`: who can reach it, that a session's memory goes when its tab goes, the cap.

The servers run as `python -m odelab serve ...` subprocesses (their memory is measured alone,
from /proc) and the pages are loaded by Debian's Chromium through Playwright, so each load makes
a real Bokeh session with its websocket, which ends when the tab closes.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.parse
from pathlib import Path

import pytest

import odelab as ol
from odelab.ui.serve import (
    SessionBook,
    _Target,
    cli_serve,
    host_is_loopback,
    serve,
    websocket_origins,
)

REPO = Path(__file__).resolve().parents[1]
STARTUP_S = 180
# the time a page has to connect its websocket: ample even on a loaded machine (a session whose
# tab closed ends within about a second regardless)
EXPIRY = "5"
# the page is ready when the trajectory arrived from the server over the websocket
PAGE_READY = """() => {
    const docs = (window.Bokeh && window.Bokeh.documents) || [];
    for (const doc of docs) for (const model of doc.all_models) {
        const data = model.data;
        if (data && data.t !== undefined && data.t.length > 1) return true;
    }
    return false;
}"""


# --------------------------------------------------------------------------------------------
# helpers: a server subprocess, plain HTTP, /proc
# --------------------------------------------------------------------------------------------
class ServerProcess:
    """`python -m odelab serve ARGS` with its log (stdout and stderr) in a file."""

    def __init__(self, args: list[str], log_path: Path):
        env = dict(os.environ, PANEL_INLINE="1",
                   PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen([sys.executable, "-m", "odelab", "serve", *args],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        found = self.wait_for(r"http://(\S+?):(\d+)/odelab(\?token=(\w+))?", STARTUP_S)
        self.port = int(found.group(2))
        self.token = found.group(4)
        self.wait_for(r"Stop with Ctrl-C", 30)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, pattern: str, timeout: float, count: int = 1) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            matches = list(re.finditer(pattern, self.log()))
            if len(matches) >= count:
                return matches[count - 1]
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {count}× {pattern!r} in the server log:\n"
                                     f"{self.log()[-3000:]}")
            time.sleep(0.1)

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.log()))

    def wait_idle(self, collected: bool = True, timeout: float = 60) -> None:
        """Until every session ended (and, if `collected`, its memory was collected)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            states = re.findall(r"\((\d+) of \d+ live\)", text)
            last_close = text.rfind(" closed (")
            if not states or (states[-1] == "0" and (
                    not collected or text.rfind("collected the memory") > last_close)):
                return
            time.sleep(0.05)
        raise AssertionError(f"sessions still live:\n{self.log()[-3000:]}")

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _request(port: int, path: str, *, method: str = "GET", headers: dict | None = None,
             body: str | None = None) -> tuple[int, dict[str, str], str]:
    """One request to 127.0.0.1:port, redirects not followed: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read().decode("utf-8", "replace"))
    finally:
        conn.close()


def _listening_addresses(pid: int, port: int) -> list[ipaddress._BaseAddress]:
    """The local addresses the process `pid` listens on at `port` (from /proc, as `ss` would)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] != "0A" or fields[9] not in inodes or int(port_hex, 16) != port:
                continue  # 0A: LISTEN
            # /proc prints each 32-bit word of the address in host (little-endian) order
            raw = b"".join(bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, width, 8))
            found.append(ipaddress.ip_address(raw))
    return found


def _machine_address() -> str | None:
    """A non-loopback IPv4 address of this machine, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(address).is_loopback else address


def _websocket_status(port: int, headers: dict[str, str]) -> int:
    """The HTTP status of a websocket handshake to the explorer (101 when it is accepted)."""
    lines = ["GET /odelab/ws HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Version: 13",
             f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
             *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        reply = b""
        while b"\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def _wait_ready(page, server: ServerProcess) -> None:
    """Until the page shows the explorer's trajectory; on a timeout, fail with what the server
    logged and what the page said (its console and text)."""
    console = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    try:
        page.wait_for_function(PAGE_READY, timeout=180_000)
    except Exception as err:  # playwright's TimeoutError
        raise AssertionError(
            f"the explorer page never drew its trajectory ({type(err).__name__}).\n"
            f"page text: {page.inner_text('body')[:500]!r}\nconsole: {console[-20:]}\n"
            f"server log:\n{server.log()[-3000:]}") from err


def _load_page(context, url: str, server: ServerProcess) -> None:
    """Open `url` in a new tab, wait until the explorer computed and showed, close the tab."""
    page = context.new_page()
    assert page.goto(url).status == 200
    _wait_ready(page, server)
    page.close()


# --------------------------------------------------------------------------------------------
# a server with the defaults: loopback only
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_server(tmp_path_factory):
    server = ServerProcess(["exponential_decay", "--port", "0", "--session-expiry", EXPIRY],
                           tmp_path_factory.mktemp("serve") / "local.log")
    yield server
    server.stop()


def test_default_binding_is_loopback(local_server):
    assert local_server.token is None
    addresses = _listening_addresses(local_server.proc.pid, local_server.port)
    assert addresses and all(a.is_loopback for a in addresses), addresses
    other = _machine_address()
    if other is not None:  # the machine's network address does not answer
        with pytest.raises(OSError), socket.create_connection((other, local_server.port), 5):
            pass
    # a page of another site whose name was rebound to 127.0.0.1 is turned away
    status, headers, _ = _request(local_server.port, "/odelab",
                                  headers={"Host": f"attacker.example:{local_server.port}"})
    assert status == 302 and "/login" in headers["location"]
    status, _, text = _request(local_server.port, "/login",
                               headers={"Host": f"attacker.example:{local_server.port}"})
    assert status == 403 and "--host 0.0.0.0" in text
    opened = local_server.count(r"session \d+ opened")
    status, _, text = _request(local_server.port, "/odelab")
    assert status == 200 and "static/js/bokeh" in text and "cdn.bokeh.org" not in text
    local_server.wait_for(r"session \d+ opened", 30, count=opened + 1)
    local_server.wait_idle()


def test_sixteen_page_loads_give_their_memory_back(local_server, browser):
    """The reproduction of the leak: each load used to keep ~16 MB for good.

    One tab at a time, each session ending before the next page loads: memory then measures
    what a session leaves behind. (Sessions alive together raise the allocator's high-water
    mark once, by a few MB per extra session, and later visits reuse that memory.)
    """
    server = local_server
    url = f"http://127.0.0.1:{server.port}/odelab"
    context = browser.new_context()
    server.wait_idle()
    opened = server.count(r"session \d+ opened")
    start = time.monotonic()
    levels = []
    for i in range(16):
        _load_page(context, url, server)
        server.wait_idle()
        if i % 5 == 0:  # after the 1st, 6th, 11th and 16th load
            levels.append(server.rss_mb())
    seconds = time.monotonic() - start
    context.close()
    # every load made a session (a second one if its websocket came after the expiry), and
    # every session ended
    made = server.count(r"session \d+ opened") - opened
    assert made >= 16 and server.count(r"session \d+ closed") == opened + made
    first, last = levels[0], levels[-1]
    print(f"\n16 page loads ({made} sessions) in {seconds:.0f} s; server RSS after loads 1, 6, "
          f"11, 16: {', '.join(f'{v:.1f}' for v in levels)} MB")
    assert last - first < 5.0, levels  # it kept ~16 MB per load before (240 MB here)
    assert last - levels[1] < 2.0, levels  # and nothing creeps up once warm


# --------------------------------------------------------------------------------------------
# a server open to the network: token, websocket origins, session cap
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    server = ServerProcess(["exponential_decay", "--host", "0.0.0.0", "--port", "0",
                            "--max-sessions", "2", "--session-expiry", EXPIRY],
                           tmp_path_factory.mktemp("serve") / "open.log")
    yield server
    server.stop()


def test_open_host_requires_the_token(open_server):
    port, token = open_server.port, open_server.token
    assert token and len(token) >= 32
    addresses = _listening_addresses(open_server.proc.pid, port)
    assert ipaddress.ip_address("0.0.0.0") in addresses
    opened = open_server.count(r"session \d+ opened")
    # without the token (or with a wrong one): sent to the login page, no session is made
    for path in ("/odelab", "/odelab?token=wrong-token-0000", "/odelab/metadata",
                 "/odelab/autoload.js?bokeh-autoload-element=x"):
        status, headers, text = _request(port, path)
        assert status in (302, 403), (path, status)
        assert "static/js/bokeh" not in text
        if status == 302:
            assert headers["location"].startswith(("/login?", "./login?"))
    status, _, text = _request(port, "/odelab", headers={"Authorization": "token nope-nope"})
    assert status == 302
    status, _, text = _request(port, "/login?next=%2Fodelab")
    assert status == 200 and "needs its token" in text and token not in text
    assert open_server.count(r"session \d+ opened") == opened
    # with the token: in the URL (which sets the login cookie) or in the Authorization header
    status, headers, text = _request(port, f"/odelab?token={token}")
    assert status == 200 and "static/js/bokeh" in text
    cookie = headers["set-cookie"].split(";")[0]
    assert cookie.startswith(f"odelab-auth-{port}=") and token not in cookie
    assert "httponly" in headers["set-cookie"].lower()
    open_server.wait_idle()
    status, _, text = _request(port, "/odelab", headers={"Authorization": f"token {token}"})
    assert status == 200 and "static/js/bokeh" in text
    open_server.wait_idle()
    status, _, _ = _request(port, "/odelab", headers={"Cookie": cookie})
    assert status == 200
    open_server.wait_idle()
    # the login form
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, text = _request(port, "/login", method="POST", headers=form,
                               body="token=wrong&next=%2Fodelab")
    assert status == 403 and "Wrong token" in text
    status, headers, _ = _request(
        port, "/login", method="POST", headers=form,
        body=urllib.parse.urlencode({"token": token, "next": "//evil.example/"}))
    assert status == 302 and headers["location"] == "/odelab"  # never an open redirect
    assert headers["set-cookie"].split(";")[0] == cookie


def test_open_host_sets_the_websocket_origins(open_server):
    port, token = open_server.port, open_server.token
    line = open_server.wait_for(r"open its websocket: (.*) \(add more", 5).group(1)
    origins = line.split(", ")
    assert f"127.0.0.1:{port}" in origins and f"localhost:{port}" in origins
    assert f"{socket.gethostname()}:{port}" in origins
    assert not any("*" in o for o in origins)
    _, headers, _ = _request(port, f"/odelab?token={token}")
    cookie = headers["set-cookie"].split(";")[0]
    good, bad = f"http://127.0.0.1:{port}", f"http://attacker.example:{port}"
    assert _websocket_status(port, {"Origin": bad, "Cookie": cookie}) == 403
    assert _websocket_status(port, {"Origin": good}) == 403  # no token, no websocket
    assert _websocket_status(port, {"Origin": good, "Cookie": cookie}) == 101
    open_server.wait_idle()


def test_session_cap_refuses_politely(open_server, browser):
    port, token = open_server.port, open_server.token
    open_server.wait_idle()
    context = browser.new_context()
    first = context.new_page()
    first.goto(f"http://127.0.0.1:{port}/odelab?token={token}")  # the link from the terminal
    _wait_ready(first, open_server)  # the cookie admitted the websocket
    second = context.new_page()
    second.goto(f"http://127.0.0.1:{port}/odelab")
    _wait_ready(second, open_server)
    refused_before = open_server.count("refused a page")
    third = context.new_page()
    response = third.goto(f"http://127.0.0.1:{port}/odelab")
    assert response.status == 503 and response.headers["retry-after"]
    assert third.inner_text("h1") == "odelab is busy"
    assert "at most 2 explorer sessions" in third.inner_text("body")
    assert open_server.count("refused a page") == refused_before + 1
    first.close()
    open_server.wait_for(r"\(1 of 2 live\)", 30, count=open_server.count(r"\(1 of 2 live\)") + 1)
    assert third.reload().status == 200
    _wait_ready(third, open_server)
    context.close()
    open_server.wait_idle()


# --------------------------------------------------------------------------------------------
# without a server
# --------------------------------------------------------------------------------------------
def test_loopback_and_origin_rules():
    for host in ("localhost", "127.0.0.1", "::1", "[::1]", "127.0.0.2"):
        assert host_is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.5"):
        assert not host_is_loopback(host), host
    local = websocket_origins("localhost", 5006)
    assert local == ["127.0.0.1:5006", "[::1]:5006", "localhost:5006"]
    opened = websocket_origins("0.0.0.0", 5006, ["proxy.example", "proxy.example:8443"])
    assert set(local) < set(opened)
    assert f"{socket.gethostname()}:5006" in opened
    assert "proxy.example:80" in opened and "proxy.example:8443" in opened
    assert websocket_origins("10.1.2.3", 80) == ["10.1.2.3:80", "127.0.0.1:80", "[::1]:80",
                                                 "localhost:80"]


def test_bad_options_name_the_fix(capsys):
    assert cli_serve(["exponential_decay", "--max-sessions", "0"]) == 2
    assert "max_sessions=0" in capsys.readouterr().err
    assert cli_serve(["exponential_decay", "--token", "short"]) == 2
    assert "at least 8" in capsys.readouterr().err
    assert cli_serve(["exponential_decay", "--session-expiry", "-1"]) == 2
    assert "session_expiry" in capsys.readouterr().err
    with pytest.raises(ol.InputError, match="host"):
        serve("exponential_decay", host=" ")
    with pytest.raises(ol.InputError, match="not both"):
        serve("exponential_decay", host="localhost", address="0.0.0.0")


class _FakeExplorer:
    def __init__(self):
        self.closed = []

    def close(self, wait=True):
        self.closed.append(wait)


def test_session_book_caps_and_closes_each_explorer_once_unshown():
    book = SessionBook(limit=2)
    shared, own = _FakeExplorer(), _FakeExplorer()
    a, b = book.reserve(), book.reserve()
    assert (a, b) == (1, 2) and book.full() and book.reserve() is None and book.refused == 1
    book.attach(a, shared)
    book.attach(b, shared)
    book.end(a)
    assert shared.closed == [] and book.live == 1  # still shown by session b
    book.end(b)
    assert shared.closed == [False] and book.live == 0  # closed without blocking
    c = book.reserve()
    book.attach(c, own)
    book.end(c)
    book.end(c)  # told twice: counted and closed once
    assert own.closed == [False] and book.opened == 3 and book.closed == 3 and book.live == 0


def test_sessions_share_one_engine_and_its_compiled_programs():
    target = _Target("exponential_decay")
    first, second = target.new_explorer(), target.new_explorer()
    assert first is not second and first.engine is second.engine
    try:
        for explorer in (first, second):
            explorer.background = False
        first.refresh()
        before = ol.compile_count()
        second.refresh()
        assert second.status_level == "success"
        assert ol.compile_count() == before  # the second visitor compiles nothing
    finally:
        first.close()
        second.close()
    with pytest.raises(ol.InputError, match="engine"):
        type(first)(ol.ui.Objective(ol.gallery.exponential_decay()), engine=first.engine)


def test_an_explorer_object_is_the_template_of_each_session():
    template = ol.explore(ol.gallery.exponential_decay(), solver="kvaerno5", n_save=51,
                          values={"k": 0.25})
    module = types.ModuleType("served_explorer_module")
    module.ex = template
    sys.modules[module.__name__] = module
    try:
        target = _Target("served_explorer_module:ex")
        first, second = target.new_explorer(), target.new_explorer()
    finally:
        del sys.modules[module.__name__]
    assert first is not template and second is not first
    for explorer in (first, second):
        assert explorer.engine is template.engine and explorer.background
        assert (explorer.solver, explorer.n_save, explorer.values["k"]) == ("kvaerno5", 51, 0.25)
