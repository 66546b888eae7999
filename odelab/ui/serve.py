"""`odelab serve MODULE:OBJECT`: the explorer as a standalone web page (a classroom projector).

MODULE:OBJECT names a System, an Objective, an Explorer, or a function returning one of those
(called once per browser session), e.g. ``odelab serve mymodels:pendulum``. A bare gallery name
works too: ``odelab serve lorenz``. The page is served by Panel's Bokeh server with its own
JavaScript, so it works without internet access.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any

from .._errors import InputError, OdelabError
from .._system import System

DEFAULT_PORT = 5006


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


def explorer_factory(target: str) -> Callable[[], Any]:
    """A function building a fresh explorer per browser session for `target`."""
    from . import Explorer, Objective, explore

    obj = _resolve(target)

    def build() -> Explorer:
        value = obj() if callable(obj) and not isinstance(obj, (System, Explorer)) else obj
        if isinstance(value, Explorer):
            return value
        if isinstance(value, (System, Objective)):
            # a worker thread keeps the page responsive (busy indicator) while programs compile
            return explore(value, background=True)
        raise InputError(
            f"`{target}` gave a {type(value).__name__}; odelab serve needs a System, an "
            "Objective, an Explorer or a function returning one."
        )

    build()  # fail now, in the terminal, rather than in the first browser session
    return build


def serve(target: str, port: int = DEFAULT_PORT, show: bool = False, address: str | None = None,
          **kwargs: Any) -> Any:
    """Serve the explorer of `target` ("MODULE:OBJECT" or a gallery name) on `port`.

    show: open a browser tab. Blocks until stopped (Ctrl-C); with `threaded=True` in kwargs it
    returns the running server instead (stop it with `.stop()`).
    """
    import panel as pn

    build = explorer_factory(target)
    return pn.serve({"odelab": lambda: build().__panel__()}, port=port, show=show,
                    address=address, title=f"odelab: {target}", **kwargs)


def cli_serve(argv: list[str] | None = None) -> int:
    """`odelab serve` from the command line; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="odelab serve",
        description="Serve the odelab explorer of a system as a web page.",
    )
    parser.add_argument("target", help="MODULE:OBJECT (a System, Objective, Explorer or a "
                                       "function returning one) or a gallery name, e.g. lorenz")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 5006)")
    parser.add_argument("--address", default=None, help="address to listen on")
    parser.add_argument("--show", action="store_true", help="open a browser tab")
    args = parser.parse_args(argv)
    try:
        serve(args.target, port=args.port, show=args.show, address=args.address)
    except OdelabError as err:
        print(f"odelab serve: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
