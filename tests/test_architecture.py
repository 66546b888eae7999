"""The house rules, checked on the code: imports run one way, no circles, no reaching into
another package's private names, and nothing that depends on import order.

The import graph is read from the source (every `import` statement, function-local ones
included, `if TYPE_CHECKING:` blocks left out), so a rule breaks here before it breaks at run
time. See the package docstring of `odelab` for the layers.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1] / "odelab"

# Lowest first: a module may import modules of its own layer and of the layers below it.
LAYERS = [
    ["_errors", "_inputs", "_events", "_progress", "_config", "_compilations", "_version"],
    ["system"],
    ["solve"],
    ["methods"],
    ["derivatives"],
    ["analysis", "gallery"],
    ["lab", "ui", "cli", "distributed", "__init__", "__main__"],
]
LAYER = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import in the file."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, [a.name for a in node.names], node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _odelab_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "labextension" not in p.parts)


MODULES = {_module_name(p): p for p in _odelab_files()}


def _resolve(target: str, names: list[str]) -> list[str]:
    """The odelab modules an import statement loads (a package import loads its __init__)."""
    if not target.startswith("odelab"):
        return []
    submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
    # `from package import module, ...` runs the package's __init__ only for names it defines
    others = len(submodules) < len(names) or not names
    return submodules + ([target] if others and target in MODULES else [])


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, names, _ in _imports(path):
            for loaded in _resolve(target, names):
                if loaded != module:
                    graph[module].add(loaded)
    return graph


def _part(module: str) -> str:
    """The top-level part of odelab a module belongs to ("solve", "_errors", "__init__", ...)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_belongs_to_a_layer():
    unplaced = sorted({_part(m) for m in MODULES} - set(LAYER))
    assert not unplaced, f"add these parts of odelab to a layer in LAYERS: {unplaced}"


def test_no_import_circles():
    graph = _graph()
    # Tarjan's strongly connected components
    index, low, stack, on_stack, circles = {}, {}, [], set(), []
    counter = [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            # a package's __init__ importing its own modules is not a circle of its own making
            real = [m for m in component if not (m in MODULES and MODULES[m].name == "__init__.py"
                                                  and all(x.startswith(m + ".") or x == m
                                                          for x in component))]
            if len(component) > 1 and real:
                circles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            connect(v)
    assert not circles, f"import circles: {circles}"


def test_imports_run_one_way():
    wrong = []
    for module, path in MODULES.items():
        here = LAYER[_part(module)]
        for target, names, line in _imports(path):
            for loaded in _resolve(target, names):
                there = LAYER[_part(loaded)]
                if there > here:
                    wrong.append(f"{path.relative_to(ROOT.parent)}:{line} imports {loaded}")
    assert not wrong, "imports that run up the layers:\n" + "\n".join(wrong)


def test_nothing_below_lab_and_ui_imports_them():
    wrong = []
    for module, path in MODULES.items():
        if _part(module) in ("lab", "ui", "cli", "__init__", "__main__"):
            continue
        for target, names, line in _imports(path):
            for loaded in _resolve(target, names):
                if _part(loaded) in ("lab", "ui"):
                    wrong.append(f"{path.relative_to(ROOT.parent)}:{line} imports {loaded}")
            if target.split(".")[0] in ("panel", "bokeh", "comm", "ipywidgets", "jupyter_bokeh"):
                wrong.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
    assert not wrong, "the library must not know the lab or the UI:\n" + "\n".join(wrong)


def _package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_private_names_across_packages():
    """`from ..solve.front import _x` or `from ..methods import _inner` across packages is
    refused: packages talk through the names they export. The top-level private modules
    (`odelab._errors`, `_inputs`, `_events`, ...) are the shared foundation and open to all."""
    wrong = []
    for module, path in MODULES.items():
        for target, names, line in _imports(path):
            if not target.startswith("odelab") or _package_of(target) == _package_of(module):
                continue
            where = f"{path.relative_to(ROOT.parent)}:{line}"
            if any(part.startswith("_") for part in target.split(".")[2:]):
                wrong.append(f"{where} imports the private module {target}")
            for name in names:
                if not name.startswith("_") or name.endswith("__"):  # dunders are public
                    continue
                if f"{target}.{name}" in MODULES and target == "odelab":
                    continue  # a foundation module such as odelab._events
                wrong.append(f"{where} imports the private name {target}.{name}")
    assert not wrong, "\n".join(wrong)


# --------------------------------------------------------------------------------------------
# import order and what `import odelab` loads
# --------------------------------------------------------------------------------------------
def _run(code: str, env: dict | None = None) -> dict:
    # a fresh process as a user starts it: odelab (imported by this test session) has put
    # EQX_ON_ERROR into this process's environment, which the child must not inherit
    clean = {k: v for k, v in os.environ.items() if k != "EQX_ON_ERROR"}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, env={**clean, **(env or {})}, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_odelab_loads_no_ui_and_no_comm_machinery():
    seen = _run("""
        import json, sys
        import odelab
        heavy = [m for m in ("panel", "bokeh", "comm", "ipywidgets", "jupyter_bokeh",
                             "odelab.ui", "odelab.lab", "optax", "scipy")
                 if m in sys.modules]
        print(json.dumps(heavy))
    """)
    assert seen == [], f"`import odelab` loaded {seen}"


# "diffrax first" covers equinox first as well: importing diffrax imports equinox, which reads
# EQX_ON_ERROR then, before odelab could set it
ORDERS = {
    "odelab first": "import odelab as ol\nimport diffrax\nimport equinox\n",
    "diffrax first": "import diffrax\nimport equinox\nimport odelab as ol\n",
}


@pytest.mark.slow
@pytest.mark.parametrize("order", list(ORDERS))
def test_import_order_changes_nothing(order, tmp_path):
    """Solves and gradients work and land in the persistent cache whatever came first."""
    cache = tmp_path / "cache"
    result = _run(ORDERS[order] + """
import json, os
import numpy as np
import jax.numpy as jnp

@ol.system(states=("x",), params={"k": 1.0}, y0=[1.0], t_span=(0.0, 1.0))
def decay(t, y, p):
    return -p["k"] * y

sol = ol.solve(decay, saveat=np.linspace(0, 1, 11), solver="tsit5")
g = ol.gradient(lambda p: ol.solve(decay, params=p, saveat=np.linspace(0, 1, 11),
                                   solver="tsit5").ys[-1, 0], decay.params,
                method="checkpoint")
auto = ol.solve(decay, saveat=np.linspace(0, 1, 11))  # solver="auto" probes stiffness
print(json.dumps({"y1": float(sol.ys[-1, 0]), "g": float(g["k"]),
                  "auto": float(auto.ys[-1, 0]),
                  "cached": len(os.listdir(os.environ["ODELAB_CACHE_DIR"]))}))
""", env={"ODELAB_CACHE_DIR": str(cache), "ODELAB_CACHE_MIN_COMPILE_S": "0"})
    # y(1) = e^{-k}, dy(1)/dk = -e^{-k} at k = 1
    assert result["y1"] == pytest.approx(np.exp(-1.0), rel=1e-5)
    assert result["auto"] == pytest.approx(np.exp(-1.0), rel=1e-5)
    assert result["g"] == pytest.approx(-np.exp(-1.0), rel=1e-5)
    # the solve and the gradient program at least (the probe and others may add more)
    assert result["cached"] >= 2, f"{order}: only {result['cached']} programs were cached"



def test_the_reported_version_is_the_packaged_one():
    import tomllib

    import odelab

    with open(ROOT.parent / "pyproject.toml", "rb") as f:
        assert odelab.__version__ == tomllib.load(f)["project"]["version"]
