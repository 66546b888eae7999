"""odelab's views in a notebook page: Panel's JavaScript inline (never from a CDN) whatever Bokeh
loaded before, and views that show their state as it is when the page connects.

A notebook page can hold plain Bokeh plots (`bokeh.io.output_notebook(INLINE)` + `show`) and
Panel views (odelab's explorer) in any order. Two copies of BokehJS of the same version then meet
in one page, and Panel's loader mishandles one order: when a plain BokehJS (without Panel's
models) is already on the page, the loader loads a second BokehJS carrying Panel, then puts the
first one back as `window.Bokeh`. Panel's models are registered on the copy that was dropped, so
every Panel view of the page stays blank ("Unable to run Panel code because Bokeh or Panel library
is missing") until the page is reloaded.

`load_extension` runs Panel's own loader, with one guard in front: if the page's BokehJS is the
same version and lacks Panel, the guard takes it off `window.Bokeh` first, so the BokehJS that
Panel loads (a complete one: Bokeh, its widgets and tables, and Panel) stays. Plots already drawn
by the old copy keep working (each view holds its own BokehJS), and plain Bokeh outputs shown
later use the complete copy. The other order needs nothing: a plain Bokeh loader leaves a BokehJS
that is already on the page in place.

Panel's page side (its CommManager) also sends the kernel back every change the kernel has just
made to the page (Bokeh marks those `sync=false`; Bokeh's own server client skips them, Panel's
does not). A stream is then appended twice, and a quick second update can be overwritten by the
echo of the first. `load_extension` follows Panel's loader with a filter that leaves such changes
out, as Bokeh's client does.

Once Panel is imported, plain Bokeh's own loader (`output_notebook(INLINE)`) lists the script of
Panel's ESM components by a path only `panel serve` serves (static/extensions/panel/...): in a
notebook page it is a 404 and a refused script. `load_extension` also registers a display hook that
takes such paths out of Bokeh's loaders: Panel's inline loader has already put that script in the
page.

`shown_when_connected` is for views whose state changes right after they are displayed (Run All
runs the next cells before the page has drawn the output). A Panel output carries a snapshot of
its models; changes made before the page has opened its comm to the kernel are queued by Panel,
each on its own retry timer, and reach the page in no fixed order: a later state can be
overwritten by an earlier one, or refer to a model the page does not know yet. So the output
first holds a small marker; when the page has drawn it (and so has opened the comm), the marker
reports back and is replaced by the view, built from the state of that moment. Every later change
travels over the open comm, in order.

JupyterLab 4.4 and later send comm messages to kernel subshells (ipykernel 7): each comm target's
messages are handled on a thread of its own, while the main shell runs cells and the explorer's
results are applied on the main thread. Panel's documents are not thread-safe: a page's message
handled on a subshell thread while the main thread changes the same document could send the page
half-made models (measured: about one first frame in three then carried Panel's stylesheets as
CDN addresses, which fail offline, instead of inline). `load_extension` therefore hands every
Panel (pyviz_comms) message that arrives on another thread to the kernel's main event loop, where
Panel's messages were handled before subshells existed; other comms (ipywidgets, odelab's own
JupyterLab bridge) keep their subshells.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import threading
from collections.abc import Callable
from typing import Any

import bokeh
import panel as pn
import param
from panel.reactive import ReactiveHTML

LOAD_MIME = "application/vnd.holoviews_load.v0+json"
BOKEH_LOAD_MIME = "application/vnd.bokehjs_load.v0+json"
JAVASCRIPT_MIME = "application/javascript"
_JS_URLS = re.compile(r"(const js_urls = )(\[.*?\]);")

_GUARD = """\
(function (root) {
  // odelab: Panel's loader would restore a same-version BokehJS that lacks Panel's models
  const version = %s;
  const current = root.Bokeh;
  if (current !== undefined && current.Panel === undefined && current.version === version) {
    root.Bokeh = undefined;
  }
})(window);
"""


_SYNC_FILTER = """\
(function (root) {
  // odelab: Panel's CommManager would send the kernel's own changes (sync === false) back to it
  const name = "panel.models.comm_manager.CommManager";
  function install() {
    const models = root.Bokeh && root.Bokeh.Models;
    const known = models && models._known_models;
    const CommManager = known && known.get(name);
    if (CommManager === undefined) return false;
    const proto = CommManager.prototype;
    if (!proto.__odelab_skips_echoes) {
      const send = proto._document_changed;
      proto._document_changed = function (event) {
        if (event.sync === false) return;
        return send.call(this, event);
      };
      proto.__odelab_skips_echoes = true;
    }
    return true;
  }
  if (!install()) {  // Panel's loader registers its models a moment later
    const timer = setInterval(() => { if (install()) clearInterval(timer); }, 25);
    setTimeout(() => clearInterval(timer), 120000);
  }
})(window);
"""


def guard_script(version: str | None = None) -> str:
    """The JavaScript run in front of Panel's loader (see the module docstring)."""
    return _GUARD % json.dumps(version or bokeh.__version__)


def guarded(data: dict) -> dict:
    """A copy of a display bundle with the guard in front of each piece of loader JavaScript and
    the echo filter after it (both are idempotent)."""
    if LOAD_MIME not in data:
        return data
    guard = guard_script()
    return {mime: f"{guard}{value}\n{_SYNC_FILTER}" if mime in (LOAD_MIME, JAVASCRIPT_MIME)
            else value for mime, value in data.items()}


def served_only(url: str) -> bool:
    """Whether a script URL is a path only a Bokeh/Panel server serves (static/extensions/...)."""
    return re.match(r"^([a-z][a-z0-9+.-]*:|/)", url) is None and "static/extensions/" in url


def without_server_paths(js: str) -> str:
    """Bokeh's loader JavaScript without the script URLs that only a Bokeh/Panel server serves."""

    def keep_loadable(match: re.Match) -> str:
        urls = [url for url in json.loads(match.group(2)) if not served_only(url)]
        return f"{match.group(1)}{json.dumps(urls)};"

    return _JS_URLS.sub(keep_loadable, js, count=1)


def _bokeh_loader_hook(msg: dict) -> dict:
    """ipykernel display hook: Bokeh's loaders leave out server-only script paths."""
    data = msg.get("content", {}).get("data", {})
    if isinstance(data, dict) and BOKEH_LOAD_MIME in data:
        for mime in (BOKEH_LOAD_MIME, JAVASCRIPT_MIME):
            if isinstance(data.get(mime), str):
                data[mime] = without_server_paths(data[mime])
    return msg


_hooked: list = []  # the display publishers the hook is registered with


def _hook_bokeh_loaders() -> None:
    from IPython import get_ipython

    publisher = getattr(get_ipython(), "display_pub", None)
    register = getattr(publisher, "register_hook", None)  # ipykernel's publisher has hooks
    if register is not None and not any(p is publisher for p in _hooked):
        register(_bokeh_loader_hook)
        _hooked.append(publisher)


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running this thread (a Jupyter kernel's), or None (a plain script)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_MAIN_LOOP: list = []  # the kernel's main event loop, once known
HANDED_OVER = [0]  # how many messages came on another thread and went to the main loop


def on_main_thread(handle: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """`handle(comm, msg)`, run on the kernel's main event loop when called from another thread
    (a subshell), in the order the calls were made; called directly on the main thread or when
    no main loop is known."""

    @functools.wraps(handle)
    def handle_on_main(comm: Any, msg: Any) -> Any:
        loop = _MAIN_LOOP[0] if _MAIN_LOOP else None
        if loop is not None and threading.current_thread() is not threading.main_thread():
            try:
                loop.call_soon_threadsafe(handle, comm, msg)
                HANDED_OVER[0] += 1
                return None
            except RuntimeError:  # the loop has closed (the kernel is shutting down)
                pass
        return handle(comm, msg)

    handle_on_main.__odelab_main_thread__ = True
    return handle_on_main


def _panel_messages_on_main_thread() -> None:
    """Handle Panel's comm messages on the main thread (see the module docstring)."""
    from pyviz_comms import Comm

    loop = running_loop()
    if loop is None or threading.current_thread() is not threading.main_thread():
        return
    _MAIN_LOOP[:] = [loop]
    if not getattr(Comm._handle_msg, "__odelab_main_thread__", False):
        Comm._handle_msg = on_main_thread(Comm._handle_msg)


def load_extension() -> None:
    """Load Panel's notebook extension in the current kernel, its JavaScript inlined (no CDN).

    Safe to call again (each call sends the loader to the page once more, e.g. into a new tab)
    and whatever Bokeh output the page already holds.
    """
    from IPython.display import publish_display_data
    from IPython.utils.capture import capture_output
    from panel.config import panel_extension
    from panel.io.notebook import load_notebook

    pn.config.inline = True
    with capture_output(stdout=False, stderr=False) as captured:
        if not panel_extension._loaded:
            pn.extension(inline=True)
        else:  # a complete loader again (pn.extension sends a partial one within one cell)
            load_notebook(inline=True)
    for output in captured.outputs:
        publish_display_data(guarded(output.data), output.metadata or None)
    _hook_bokeh_loaders()
    _panel_messages_on_main_thread()


class OdelabPageMarker(ReactiveHTML):
    """Tells the kernel that a page has drawn it, until the kernel answers.

    Its `render` script runs in the browser and raises `pings` at once and then every second, until
    the kernel sets `connected`. One message is not enough: Panel's page side can drop the first
    message of a freshly drawn output (its comm to the kernel may not be connected yet, and what it
    sends then is lost), and while the kernel runs other cells the pings wait in its queue.

    (No leading underscore in the name: Panel names the browser-side model of a ReactiveHTML
    class after it, and drops a leading underscore in one place but not the other.)
    """

    pings = param.Integer(default=0, doc="Raised by the page until `connected`.")
    connected = param.Boolean(default=False, doc="Set by the kernel once it heard a ping.")

    _template = (
        '<div id="note" style="padding: 8px 0; color: #57606a;">Starting the explorer: it appears '
        "as soon as the kernel is free (it finishes the cells running now first). If this stays, "
        "run the cell again.</div>"
    )
    _scripts = {
        "render": """
            data.pings = data.pings + 1
            state.timer = setInterval(() => {
              if (data.connected) clearInterval(state.timer)
              else data.pings = data.pings + 1
            }, 1000)
        """,
        "connected": "if (data.connected) { clearInterval(state.timer) }",
        "remove": "clearInterval(state.timer)",
    }


def shown_when_connected(view: pn.viewable.Viewable) -> pn.Column:
    """A Column holding a marker that gives way to `view` once a page has drawn it.

    Display the Column instead of `view` (see the module docstring for why). Each call makes a new
    Column, so a view can be displayed more than once. The marker stays in the Column, hidden, so
    pings still on their way find it.
    """
    marker = OdelabPageMarker(sizing_mode="stretch_width")
    column = pn.Column(marker, sizing_mode="stretch_width")

    def heard(_: param.parameterized.Event) -> None:
        if marker.connected:
            return
        marker.param.update(connected=True, visible=False)
        column.objects = [view, marker]

    marker.param.watch(heard, "pings")
    return column
