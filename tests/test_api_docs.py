"""The API reference (`bash scripts/docs.sh`): every public name is documented, with its docstring,
under the name users import it by, and the pages load nothing from the network."""

import html
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import odelab

ROOT = Path(__file__).resolve().parents[1]

# The modules of the reference, by their public names, and the module object behind each.
MODULES = {
    "odelab": "odelab",
    "odelab.methods": "odelab.methods",
    "odelab.gallery": "odelab.gallery",
    "odelab.bilevel": "odelab.analysis.bilevel",
    "odelab.solvers": "odelab.solve.solvers",
    "odelab.distributed": "odelab.distributed",
}


def _module(public: str):
    importlib.import_module(MODULES[public])
    return sys.modules[MODULES[public]]  # `odelab.methods` the attribute is the function


def _public_names(public: str) -> list[str]:
    """What a module offers, read from the live module (not from the docs builder)."""
    module = _module(public)
    if public == "odelab":
        names = [n for n, v in vars(module).items() if not inspect.ismodule(v)]
        names += list(module._LAZY)
    elif hasattr(module, "__all__"):
        names = list(module.__all__)
    else:
        names = [n for n, v in vars(module).items()
                 if (inspect.isfunction(v) or inspect.isclass(v))
                 and v.__module__.startswith(module.__name__)]
    return [n for n in dict.fromkeys(names) if not n.startswith("_")]


def _own_docstring(obj) -> str:
    """The object's docstring; a class's own (not a base class's, not a dataclass signature)."""
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__") or ""
        return "" if doc.startswith(f"{obj.__name__}(") else inspect.cleandoc(doc)
    return inspect.getdoc(obj) or ""


def _public_members(cls) -> dict[str, object]:
    """Methods and properties a class defines itself, under public names."""
    out = {}
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            out[name] = value
        elif isinstance(value, classmethod | staticmethod) or inspect.isfunction(value):
            out[name] = getattr(cls, name)  # getdoc then finds a docstring the method inherits
    return out


def _documentable():
    """(qualified name, object) of every public module, function, class, method and property."""
    for public in MODULES:
        module = _module(public)
        yield public, module
        for name in _public_names(public):
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                continue  # documented on its own page
            if inspect.isclass(obj):
                yield f"{public}.{name}", obj
                for member, value in _public_members(obj).items():
                    yield f"{public}.{name}.{member}", value
            elif callable(obj):
                yield f"{public}.{name}", obj


def _text(fragment: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", fragment)).split())


def _first_line(doc: str) -> str:
    """A docstring's first line as it reads once rendered (Markdown marks dropped)."""
    line = doc.strip().splitlines()[0].replace("`", "")
    return " ".join(re.sub(r"\*\*?(\S[^*]*)\*\*?", r"\1", line).split())


def _docstring_html(page: str, anchor: str) -> str:
    """The rendered docstring of the member with id `anchor` on a page ("" if absent)."""
    start = re.search(rf'<(section|div) id="{re.escape(anchor)}"[^>]*>', page)
    if start is None:
        return ""
    # A module member is a <section>; a class member a <div class="classattr"> up to the next.
    end = page.find("</section>" if start.group(1) == "section" else 'class="classattr"',
                    start.end())
    block = page[start.end(): end if end > 0 else None]
    doc = re.search(r'<div class="docstring">(.*?)</div>', block, re.S)
    return doc.group(1) if doc else ""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    # pdoc warns (UserWarning) when a name does not resolve or a module fails to import.
    done = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", str(ROOT / "docs" / "build_api.py"), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _page(site: Path, public: str) -> str:
    """The HTML of a module's page ("" if there is none)."""
    path = site / f"{public.replace('.', '/')}.html"
    return path.read_text() if path.exists() else ""


def test_pages_are_the_public_modules(site):
    pages = sorted(str(p.relative_to(site)) for p in site.rglob("*.html"))
    assert pages == sorted(["index.html", "odelab.html", "odelab/methods.html",
                            "odelab/gallery.html", "odelab/bilevel.html", "odelab/solvers.html",
                            "odelab/distributed.html"])
    assert "odelab.html" in (site / "index.html").read_text()
    top = _page(site, "odelab")
    for public in MODULES:
        if public != "odelab":
            assert f'href="{public.replace(".", "/")}.html"' in top, public
    everything = "".join(p.read_text() for p in site.rglob("*.html"))
    private = sorted(set(re.findall(r"odelab/_\w+\.html|id=\"_\w+\"", everything)))
    assert not private, f"private modules or names rendered: {private}"


def test_every_public_name_is_rendered_with_its_docstring(site):
    missing = []
    for public in MODULES:
        page = _page(site, public)
        module = _module(public)
        info = re.search(r'<section class="module-info">(.*?)</section>', page, re.S)
        if _first_line(_own_docstring(module)) not in _text(info.group(1) if info else ""):
            missing.append(f"{public} (module docstring)")
        for name in _public_names(public):
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                target = f"{public}.{name}"
                if target not in MODULES or not _page(site, target):
                    missing.append(f"{target} (no page)")
                continue
            rendered = _docstring_html(page, name)
            if not (inspect.isclass(obj) or callable(obj)):
                if f'id="{name}"' not in page:
                    missing.append(f"{public}.{name} (not rendered)")
                continue
            doc = _own_docstring(obj)
            if doc and _first_line(doc) not in _text(rendered):
                missing.append(f"{public}.{name}: {_first_line(doc)!r} not in "
                               f"{_text(rendered)[:120]!r}")
            if inspect.isclass(obj):
                for member, value in _public_members(obj).items():
                    member_doc = inspect.getdoc(value) or ""
                    shown = _text(_docstring_html(page, f"{name}.{member}"))
                    if member_doc and _first_line(member_doc) not in shown:
                        missing.append(f"{public}.{name}.{member}: {_first_line(member_doc)!r} "
                                       f"not in {shown[:120]!r}")
    assert not missing, "public names missing from the reference:\n  " + "\n  ".join(missing)


def test_no_public_function_or_class_lacks_a_docstring():
    names = list(_documentable())
    # The walk reaches the whole public surface, lazy names and sub-modules included.
    reached = {qualified for qualified, _ in names}
    for expected in ["odelab.solve", "odelab.check_gradient", "odelab.Objective",
                     "odelab.System.merge_params", "odelab.methods.Checkpoint.adjoint",
                     "odelab.gallery.lorenz", "odelab.bilevel.argmin", "odelab.solvers.Rodas5"]:
        assert expected in reached, expected
    lacking = sorted(qualified for qualified, obj in names if not _own_docstring(obj).strip())
    assert not lacking, "public names without a docstring:\n  " + "\n  ".join(lacking)


def test_pages_load_nothing_from_the_network(site):
    remote = re.compile(r"^\s*(https?:)?//", re.I)
    loads = []
    for path in [*site.rglob("*.html"), *site.rglob("*.js")]:
        text = path.read_text()
        tags = r"<(script|link|img|iframe)\b[^>]*?\b(?:src|href)=[\"']([^\"']*)"
        for tag, url in re.findall(tags, text, re.I):
            if remote.match(url):
                loads.append(f"{path.name}: <{tag}> {url}")
        for url in re.findall(r"(?:@import\s+|url\()\s*[\"']?([^\"')\s]+)", text):
            if remote.match(url):
                loads.append(f"{path.name}: CSS {url}")
        for url in re.findall(r"\bimport\s*(?:[\w{}\s,*]+from\s*)?[\"']([^\"']+)[\"']", text):
            if remote.match(url):
                loads.append(f"{path.name}: import {url}")
    assert not loads, "pages fetch from the network:\n  " + "\n  ".join(loads)
    # Search works offline: the index sits next to the pages.
    assert (site / "search.js").stat().st_size > 10_000
    assert "search.js" in _page(site, "odelab")
    assert odelab.__version__ in _page(site, "odelab")
