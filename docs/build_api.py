"""Build odelab's API reference as static HTML with pdoc: `python docs/build_api.py [OUTPUT_DIR]`.

The reference covers what users import: the names `odelab/__init__.py` exports (its explicit
re-exports and the lazily imported names in `_LAZY`), and the modules `odelab.methods`,
`odelab.gallery`, `odelab.bilevel`, `odelab.solvers` and `odelab.distributed`. The modules
behind them (`odelab.analysis.bilevel`, `odelab.solve.solvers`, ...) appear under the public
names only. The pages load nothing from the network: pdoc's math and diagram support (which use
a CDN) stay off, and the search index is a local `search.js`.

`scripts/docs.sh` runs this into `docs/api/` (open `docs/api/index.html`).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import shutil
import sys
import types
from pathlib import Path

import pdoc
import pdoc.render

# Public sub-packages documented under their own names; `odelab.ui` stays out: its entry points
# (`ol.explore`, `ol.Objective`) are documented in `odelab`.
SUBPACKAGES = ("methods", "gallery", "distributed")
# Packages the library is built from; their public names are documented where users import them.
INTERNAL = ("system", "solve", "derivatives", "analysis", "lab", "ui", "cli")
# Public modules that odelab exposes under a shorter name than where they live (`ol.bilevel`).
ALIASES = {"bilevel": "odelab.analysis.bilevel", "solvers": "odelab.solve.solvers"}


def public_names(module: types.ModuleType) -> list[str]:
    """The names a module offers its users, in source order.

    Its `__all__` when it has one; otherwise its explicit re-exports (`from ._x import a as a`)
    and the public functions and classes it defines, plus odelab's lazily imported names.
    """
    if hasattr(module, "__all__"):
        return list(module.__all__)
    tree = ast.parse(Path(inspect.getfile(module)).read_text())
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            # `import a as a` is the re-export idiom; a plain import is for the module's own use.
            names += [a.asname for a in node.names if a.asname == a.name]
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.append(node.name)
    names += list(getattr(module, "_LAZY", {}))
    return [n for n in dict.fromkeys(names) if not n.startswith("_")]


def prepare() -> None:
    """Give each documented module an `__all__` (in this process only) for pdoc to follow.

    pdoc documents exactly a module's `__all__`; odelab's modules mostly have none, so that
    `from odelab import *` does not import the lazy, heavier names.
    """
    odelab = importlib.import_module("odelab")
    top = public_names(odelab)
    for name in top:
        getattr(odelab, name)  # resolve the lazy names so pdoc sees real objects
    for alias, private in ALIASES.items():
        # A stand-in module under the public name, holding the private module's public names.
        real = importlib.import_module(private)
        stand_in = types.ModuleType(f"odelab.{alias}", real.__doc__)
        stand_in.__all__ = public_names(real)
        for name in stand_in.__all__:
            setattr(stand_in, name, getattr(real, name))
        sys.modules[stand_in.__name__] = stand_in
        setattr(odelab, alias, stand_in)
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"odelab.{sub}")
        if not hasattr(module, "__all__"):
            module.__all__ = public_names(module)
    odelab.__all__ = list(dict.fromkeys([*top, *SUBPACKAGES, *ALIASES]))


def build(output: Path) -> list[Path]:
    """Write the HTML reference into `output` and return the pages written."""
    output = Path(output)
    # Remove what an earlier build wrote, so renamed or dropped modules leave no stale pages.
    shutil.rmtree(output / "odelab", ignore_errors=True)
    for name in ("odelab.html", "index.html", "search.js"):
        (output / name).unlink(missing_ok=True)
    pdoc.render.configure(
        docformat="markdown",
        math=False,  # MathJax would come from a CDN
        mermaid=False,  # so would mermaid
        search=True,  # the index is written next to the pages as search.js
        show_source=False,
        footer_text=f"odelab {importlib.import_module('odelab').__version__}",
    )
    prepare()
    # the packages the library is built from are documented through the public names only
    internal = [rf"!odelab\.{name}(\.|$)" for name in INTERNAL]
    pdoc.pdoc("odelab", *internal, output_directory=output)
    return sorted(output.rglob("*.html"))


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "api"
    pages = build(out)
    print(f"[odelab docs] {len(pages)} pages in {out}; open {out / 'index.html'}")
