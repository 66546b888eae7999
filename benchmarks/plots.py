"""Figures for BENCHMARKS.md, drawn from the rows the benchmark modules return.

`write_figures(results, folder)` takes {module name: rows} (rows as each module's `run()`
returns them: lists of dicts) and writes one PNG per figure the rows allow. A figure whose
module did not run, or whose rows are missing, is skipped; the others are still drawn.
Matplotlib draws off-screen (Agg); nothing is shown. benchmarks/run.py calls it after writing
the tables and embeds the figures in the report.
"""

from __future__ import annotations

import math
import re
import sys
import textwrap
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# One colour per library or series, the same in every figure.
COLOURS = {
    "odelab": "#1f77b4",
    "diffrax": "#ff7f0e",
    "scipy": "#2ca02c",
    "torchdiffeq": "#d62728",
    "within target": "#1f77b4",
    "above target": "#ff7f0e",
    "median": "#1f77b4",
}
PROBLEM_TITLES = {"hires": "HIRES", "van_der_pol": "van der Pol (ε = 1e-6)",
                  "robertson": "Robertson", "oregonator": "Oregonator"}


@dataclass
class Figure:
    """One written figure: the section it belongs under, its file name and its caption."""

    section: str
    name: str
    caption: str


@dataclass
class _Spec:
    name: str  # file name without .png
    modules: tuple[str, ...]  # the modules whose rows it draws; placed under the last present
    caption: str
    draw: Callable  # results -> matplotlib Figure, or None when the rows are not there


# --------------------------------------------------------------------------------------------
# helpers
def _finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _new_figure(width: float, height: float, **kwargs):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), layout="constrained", dpi=110, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _number(v: float) -> str:
    """Three significant digits without an exponent where that reads better (1,280 not 1.28e+03)."""
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _wrap(text: str, width: int = 34) -> str:
    """`text` in lines of at most `width` characters, not breaking a short parenthesis such as
    "(Lorenz, 100 saves)" (its spaces become no-break spaces, which textwrap keeps)."""
    text = re.sub(r"\([^()]{1,24}\)", lambda m: m.group(0).replace(" ", "\u00a0"), str(text))
    return "\n".join(textwrap.wrap(text, width)) or text


def _log_limits(values: list[float], extra: list[float] = ()) -> tuple[float, float]:
    """Lower and upper x limits on a log axis: a whole decade below the values, and room on
    the right for the labels written at the ends of the bars."""
    vals = [v for v in [*values, *extra] if _finite(v) and v > 0]
    lo = 10 ** math.floor(math.log10(min(vals)) - 0.05)
    return lo, max(vals) * 5


def _groups(rows: list[dict], key: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(str(row.get(key, "")), []).append(row)
    return out


def _ratio_figure(rows: list[dict], title: str, xlabel: str, target: float | None,
                  label: Callable[[dict], str] = lambda r: str(r.get("method", ""))):
    """Horizontal bars of `ratio`, one panel per problem, log x axis, a dashed target line."""
    rows = [r for r in rows if _finite(r.get("ratio")) and r["ratio"] > 0]
    if not rows:
        return None
    panels = _groups(rows, "problem")
    sizes = [len(p) for p in panels.values()]
    fig = _new_figure(8.0, 1.3 + 0.9 * len(panels) + 0.36 * sum(sizes))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [n + 1.2 for n in sizes]})[:, 0]
    values = [r["ratio"] for r in rows]
    lo, hi = _log_limits(values, [target] if target else [])
    for ax, (problem, group) in zip(axes, panels.items()):
        names = [label(r) for r in group]
        if len(set(names)) < len(names):  # the same method under two headings: say which
            names = [f"{label(r)} ({r.get('what', '')})" for r in group]
        ratios = [r["ratio"] for r in group]
        kinds = ["within target" if target is None or v <= target else "above target"
                 for v in ratios]
        ys = range(len(group))
        ax.barh(ys, [v - lo for v in ratios], left=lo, height=0.65,
                color=[COLOURS[k] for k in kinds])
        for y, v in zip(ys, ratios):
            ax.text(v * 1.1, y, _number(v), va="center", fontsize=8, zorder=3,
                    bbox=dict(facecolor="white", edgecolor="none", pad=1, alpha=0.85))
        ax.set_yticks(list(ys), [_wrap(n, 40) for n in names], fontsize=9)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.set_title(problem, fontsize=10, loc="left")
        ax.grid(axis="x", which="major", alpha=0.3)
        if target is not None:
            ax.axvline(target, color="black", linestyle="--", linewidth=1)
    axes[-1].set_xlabel(xlabel)
    if target is not None:
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        handles = [Line2D([], [], color="black", linestyle="--", label=f"target {target:g}"),
                   Patch(color=COLOURS["within target"], label="within target"),
                   Patch(color=COLOURS["above target"], label="above target")]
        fig.legend(handles=handles, fontsize=9, loc="outside lower center", ncols=3)
    fig.suptitle(title, fontsize=11)
    return fig


def _paired_figure(panels: dict[str, list[tuple[str, list[tuple[str, float]]]]], title: str,
                   xlabel: str, note: Callable[[list[tuple[str, float]]], str] | None = None):
    """Groups of horizontal bars on a log x axis: per panel, per comparison, one bar per series
    (e.g. odelab and diffrax), coloured by series; `note` writes a text at each group's end."""
    panels = {k: [(lab, [(s, v) for s, v in bars if _finite(v) and v > 0])
                  for lab, bars in items] for k, items in panels.items()}
    panels = {k: [(lab, bars) for lab, bars in items if bars] for k, items in panels.items()}
    panels = {k: items for k, items in panels.items() if items}
    if not panels:
        return None
    heights = [sum(len(bars) for _, bars in items) + 0.6 * len(items)
               for items in panels.values()]
    fig = _new_figure(8.5, 1.3 + 0.8 * len(panels) + 0.3 * sum(heights))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [h + 1.5 for h in heights]})[:, 0]
    values = [v for items in panels.values() for _, bars in items for _, v in bars]
    lo, hi = _log_limits(values)
    seen = {}
    for ax, (panel, items) in zip(axes, panels.items()):
        y, ticks, labels = 0.0, [], []
        for label, bars in items:
            start = y
            for series, v in bars:
                seen[series] = ax.barh(y, v - lo, left=lo, height=0.8, color=COLOURS.get(series),
                                       label=series)
                ax.text(v * 1.1, y, f"{v:.2g} s", va="center", fontsize=8)
                y += 1
            ticks.append((start + y - 1) / 2)
            labels.append(_wrap(label, 46) + (f"\n{note(bars)}" if note else ""))
            y += 0.6
        ax.set_yticks(ticks, labels, fontsize=9)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.set_title(panel, fontsize=10, loc="left")
        ax.grid(axis="x", which="major", alpha=0.3)
    axes[-1].set_xlabel(xlabel)
    fig.suptitle(title, fontsize=11)
    fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncols=len(seen),
               fontsize=9)
    return fig


def _ratio_note(bars: list[tuple[str, float]]) -> str:
    if len(bars) != 2:
        return ""
    (a, va), (b, vb) = bars
    return f"({a} / {b} = {va / vb:.2g})"


# --------------------------------------------------------------------------------------------
# the figures
def odelab_vs_others(results: dict[str, list[dict]]):
    """bench_solve and bench_scipy: odelab's time next to diffrax's and scipy's."""
    panels = {}
    for module, other, title in (("bench_solve", "diffrax", "vs diffrax called directly "
                                  "(bench_solve)"),
                                 ("bench_scipy", "scipy", "vs scipy (bench_scipy)")):
        items = [(r.get("benchmark", ""), [("odelab", r["odelab_s"]), (other, r[f"{other}_s"])])
                 for r in results.get(module) or [] if "odelab_s" in r and f"{other}_s" in r]
        if items:
            panels[title] = items
    return _paired_figure(panels, "odelab vs diffrax and scipy: time per call "
                          "(shorter is faster)", "seconds per call (median, log scale)",
                          _ratio_note)


def first_solve_cache(results: dict[str, list[dict]]):
    """bench_solve: the first solve in a new process, with an empty and a filled cache."""
    rows = [r for r in results.get("bench_solve") or []
            if _finite(r.get("cold_s")) and _finite(r.get("warm_s"))]
    if not rows:
        return None
    fig = _new_figure(7.0, 1.6 + 0.9 * len(rows))
    ax = fig.subplots()
    labels, values, colours = [], [], []
    for r in rows:
        labels += ["empty cache (cold)", "filled cache (warm)"]
        values += [r["cold_s"], r["warm_s"]]
        colours += ["#ff7f0e", "#1f77b4"]
    ys = range(len(values))
    ax.barh(ys, values, height=0.6, color=colours)
    for y, v in zip(ys, values):
        ax.text(v, y, f" {v:.2g} s", va="center", fontsize=8)
    ax.set_yticks(list(ys), labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, max(values) * 1.25)
    ax.set_xlabel("seconds for the first solve after `import odelab` (Lorenz)")
    ax.grid(axis="x", alpha=0.3)
    ratio = rows[0]["warm_s"] / rows[0]["cold_s"]
    ax.set_title(f"warm / cold = {ratio:.2g} (lower is better)", fontsize=9)
    fig.suptitle("First solve in a new process: empty vs filled compilation cache",
                 fontsize=11)
    return fig


def gradient_over_solve(results: dict[str, list[dict]]):
    rows = [r for r in results.get("bench_gradients") or [] if r.get("what") == "gradient / solve"]
    return _ratio_figure(rows, "Gradient cost per method, relative to one solve",
                         "gradient time / solve time (lower is better, log scale)", 4.0)


def hvp_over_gradient(results: dict[str, list[dict]]):
    rows = [r for r in results.get("bench_gradients") or []
            if str(r.get("what", "")).startswith("HVP / gradient")]
    return _ratio_figure(rows, "Hessian-vector product cost per route, relative to one gradient",
                         "HVP time / gradient time (lower is better, log scale)", 4.0)


def memory_over_solve(results: dict[str, list[dict]]):
    rows = [r for r in results.get("bench_gradients") or []
            if r.get("what") == "memory: gradient / solve"]
    return _ratio_figure(rows, "Peak temporary memory of a gradient, relative to the solve "
                         "(XLA memory analysis)",
                         "gradient memory / solve memory (lower is better, log scale)", 3.0)


def work_precision(results: dict[str, list[dict]]):
    """Error against time, log-log, one panel per problem, one line per method."""
    rows = [r for r in results.get("work_precision") or []
            if r.get("ok", True) and _finite(r.get("error")) and r["error"] > 0
            and _finite(r.get("seconds")) and r["seconds"] > 0]
    if not rows:
        return None
    panels = _groups(rows, "problem")
    methods = list(dict.fromkeys(str(r.get("method")) for r in rows))
    ncols = min(2, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _new_figure(5.0 * ncols, 1.4 + 3.6 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    cycle = ["#1f77b4", "#17becf", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
             "#7f7f7f"]
    markers = "osD^vP*X"
    style = {m: (cycle[i % len(cycle)], markers[i % len(markers)]) for i, m in enumerate(methods)}

    def library(method: str) -> str:
        if method.startswith("scipy"):
            return method
        return f"{method} (odelab)" if method in ("Rodas5", "RadauIIA5") else f"{method} (diffrax)"

    for ax, (problem, group) in zip(axes, panels.items()):
        for method in methods:
            pts = sorted(((r["seconds"], r["error"]) for r in group if r["method"] == method),
                         key=lambda p: p[1], reverse=True)
            if not pts:
                continue
            colour, marker = style[method]
            odelab = method in ("Rodas5", "RadauIIA5")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour, marker=marker,
                    linestyle="-" if odelab else "--", linewidth=2 if odelab else 1.2,
                    markersize=5, label=library(method))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(PROBLEM_TITLES.get(problem, problem.replace("_", " ")), fontsize=10)
        ax.set_xlabel("wall time per solve (s)")
        ax.set_ylabel("relative error at the final time")
        ax.grid(which="major", alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles, labels = [], []
    for ax in axes[: len(panels)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)),
               fontsize=9)
    fig.suptitle("Work-precision on stiff test problems (down and to the left is better)",
                 fontsize=11)
    return fig


def odelab_vs_torchdiffeq(results: dict[str, list[dict]]):
    panels = {}
    for r in results.get("bench_torch") or []:
        if "odelab s" not in r or "torchdiffeq s" not in r:
            continue
        label = f"odelab {r.get('odelab', '')} vs {r.get('torchdiffeq', '')}"
        panels.setdefault(str(r.get("case", "")), []).append(
            (label, [("odelab", r["odelab s"]), ("torchdiffeq", r["torchdiffeq s"])]))
    return _paired_figure(panels, "odelab vs torchdiffeq on a neural ODE: time per call "
                          "(shorter is faster)", "seconds per call (median, log scale)",
                          _ratio_note)


def explorer_latency(results: dict[str, list[dict]]):
    rows = [r for r in results.get("bench_ui") or []
            if _finite(r.get("median_ms")) and _finite(r.get("p95_ms"))]
    if not rows:
        return None
    fig = _new_figure(7.5, 1.8 + 0.6 * len(rows))
    ax = fig.subplots()
    ys = list(range(len(rows)))
    medians = [r["median_ms"] for r in rows]
    p95 = [r["p95_ms"] for r in rows]
    ax.barh(ys, medians, height=0.55, color=COLOURS["median"], label="median")
    ax.errorbar(medians, ys, xerr=[[0] * len(rows), [max(0.0, b - a) for a, b in
                                                     zip(medians, p95)]],
                fmt="none", ecolor="black", capsize=4, label="up to the 95th percentile")
    for y, m, p in zip(ys, medians, p95):
        ax.text(max(m, p) * 1.02, y, f"{m:.1f} ms (p95 {p:.1f})", va="center", fontsize=8,
                zorder=3, bbox=dict(facecolor="white", edgecolor="none", pad=1, alpha=0.85))
    ax.axvline(30, color="black", linestyle="--", linewidth=1, label="target: median 30 ms")
    ax.set_yticks(ys, [_wrap(f"{r.get('what', '')}", 30) for r in rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, max([*p95, 30]) * 1.45)
    ax.set_xlabel("milliseconds from a slider release to new plot data (lower is better)")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=9, loc="outside lower center", ncols=3)
    problem = rows[0].get("problem", "")
    ax.set_title(f"Explorer latency, {problem}", fontsize=10)
    return fig


SPECS = [
    _Spec("odelab_vs_diffrax_scipy", ("bench_solve", "bench_scipy"),
          "odelab vs diffrax and scipy, seconds per call", odelab_vs_others),
    _Spec("first_solve_cache", ("bench_solve",),
          "first solve in a new process, empty vs filled compilation cache", first_solve_cache),
    _Spec("gradient_over_solve", ("bench_gradients",),
          "gradient / solve time per gradient method (target 4)", gradient_over_solve),
    _Spec("hvp_over_gradient", ("bench_gradients",),
          "HVP / gradient time per second-order route (target 4)", hvp_over_gradient),
    _Spec("memory_over_solve", ("bench_gradients",),
          "gradient / solve peak temporary memory per method (target 3)", memory_over_solve),
    _Spec("work_precision", ("work_precision",),
          "work-precision of stiff solvers, error vs seconds", work_precision),
    _Spec("odelab_vs_torchdiffeq", ("bench_torch",),
          "odelab vs torchdiffeq, seconds per call", odelab_vs_torchdiffeq),
    _Spec("explorer_latency", ("bench_ui",),
          "explorer latency from a slider move to new plot data", explorer_latency),
]


def write_figures(results: dict[str, list[dict]], folder: Path) -> tuple[list[Figure],
                                                                        list[str]]:
    """Draw every figure the rows allow into `folder`/NAME.png.

    Returns the figures written and, for any figure that failed to draw, a one-line message
    (the traceback goes to stderr); a failed figure does not stop the others.
    Raises ModuleNotFoundError when matplotlib is not installed.
    """
    import matplotlib  # noqa: F401  (fail early, before any figure, when it is missing)

    folder = Path(folder)
    written, failed = [], []
    for spec in SPECS:
        present = [m for m in spec.modules if results.get(m)]
        if not present:
            continue
        try:
            fig = spec.draw(results)
            if fig is None:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            fig.savefig(folder / f"{spec.name}.png")
        except Exception as err:
            traceback.print_exc(file=sys.stderr)
            failed.append(f"figure {spec.name} not drawn: {type(err).__name__}: {err}")
            continue
        written.append(Figure(present[-1], f"{spec.name}.png", spec.caption))
    return written, failed
