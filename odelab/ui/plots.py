"""The explorer's Bokeh figures. Each plot owns its ColumnDataSources and knows how to show a
computed result; the explorer decides when. Tests read the sources to see what is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    FactorRange,
    HoverTool,
    LinearColorMapper,
)
from bokeh.palettes import Category10_10, Viridis256
from bokeh.plotting import figure
from bokeh.transform import dodge

from .compute import FieldResult, GradientResult, PhaseResult, Spectrum, Trajectory

TOOLS = "pan,wheel_zoom,box_zoom,reset,save"
KIND_COLORS = {
    "stable node": "#1a7f37", "stable focus": "#1a7f37", "center": "#0969da",
    "saddle": "#bf8700", "unstable node": "#cf222e", "unstable focus": "#cf222e",
}


def _color(k: int) -> str:
    return Category10_10[k % 10]


def _figure(**kw) -> figure:
    kw.setdefault("height", 330)
    kw.setdefault("sizing_mode", "stretch_width")
    kw.setdefault("tools", TOOLS)
    return figure(**kw)


class TrajectoryPlot:
    """States over time, with the observations (if any) as dots."""

    def __init__(self, states: Sequence[str]):
        self.states = list(states)
        empty = {"t": [], **{s: [] for s in self.states}}
        self.source = ColumnDataSource(dict(empty))
        self.data_source = ColumnDataSource(dict(empty))
        self.figure = _figure(title="Trajectory", x_axis_label="t", y_axis_label="state")
        self.lines = {}
        for k, s in enumerate(self.states):
            self.lines[s] = self.figure.line("t", s, source=self.source, color=_color(k),
                                             line_width=2, legend_label=s)
            self.figure.scatter("t", s, source=self.data_source, color=_color(k), size=6,
                                legend_label=s)
        self.figure.legend.click_policy = "hide"
        self.figure.legend.location = "top_left"

    def show(self, traj: Trajectory) -> None:
        self.source.data = {"t": traj.ts, **{s: traj.ys[:, k] for k, s in enumerate(self.states)}}

    def show_data(self, ts: np.ndarray, ys: np.ndarray) -> None:
        self.data_source.data = {"t": ts, **{s: ys[:, k] for k, s in enumerate(self.states)}}

    def set_visible(self, states: Sequence[str]) -> None:
        for s, line in self.lines.items():
            line.visible = s in states


class PhasePlot:
    """Two states against each other: trajectory, direction field, nullclines, equilibria.

    Clicks (Bokeh Tap events) are forwarded to `on_tap(x, y)`.
    """

    TITLE = "Phase portrait (click to start a trajectory there)"

    def __init__(self):
        self.figure = _figure(title=self.TITLE, tools=TOOLS + ",tap", height=420)
        seg = {"x0": [], "y0": [], "x1": [], "y1": []}
        self.arrows = ColumnDataSource({**seg, "speed": []})
        self.nullcline_x = ColumnDataSource(dict(seg))
        self.nullcline_y = ColumnDataSource(dict(seg))
        self.trajectory = ColumnDataSource({"x": [], "y": []})
        self.start = ColumnDataSource({"x": [], "y": []})
        self.extra = ColumnDataSource({"xs": [], "ys": []})
        self.equilibria = ColumnDataSource({"x": [], "y": [], "kind": [], "color": [],
                                            "eigenvalues": []})
        f = self.figure
        f.segment("x0", "y0", "x1", "y1", source=self.arrows, color="#8c959f", line_width=1)
        f.scatter("x1", "y1", source=self.arrows, size=3, color="#8c959f")
        f.segment("x0", "y0", "x1", "y1", source=self.nullcline_x, color="#bf3989",
                  line_width=2, legend_label="nullcline d(x)/dt = 0")
        f.segment("x0", "y0", "x1", "y1", source=self.nullcline_y, color="#8250df",
                  line_width=2, line_dash="dashed", legend_label="nullcline d(y)/dt = 0")
        f.multi_line("xs", "ys", source=self.extra, color="#57606a", line_width=1.5)
        f.line("x", "y", source=self.trajectory, color=_color(0), line_width=2)
        f.scatter("x", "y", source=self.start, size=9, color=_color(0), marker="circle")
        eq = f.scatter("x", "y", source=self.equilibria, size=13, color="color",
                       line_color="black", marker="diamond", legend_field="kind")
        f.add_tools(HoverTool(renderers=[eq], tooltips=[("", "@kind"), ("λ", "@eigenvalues")]))
        f.legend.location = "top_right"
        self._tap_callbacks = []

    def label(self, x_name: str, y_name: str) -> None:
        self.figure.xaxis.axis_label = x_name
        self.figure.yaxis.axis_label = y_name
        items = self.figure.legend.items
        if len(items) >= 2:
            items[0].label = {"value": f"nullcline d{x_name}/dt = 0"}
            items[1].label = {"value": f"nullcline d{y_name}/dt = 0"}

    def show(self, traj: Trajectory, i: int, j: int, result: PhaseResult) -> None:
        self.trajectory.data = {"x": traj.ys[:, i], "y": traj.ys[:, j]}
        self.start.data = {"x": traj.ys[:1, i], "y": traj.ys[:1, j]}
        self.arrows.data = result.arrows
        empty = {"x0": [], "y0": [], "x1": [], "y1": []}
        nx, ny = result.nullclines if result.nullclines else (empty, empty)
        self.nullcline_x.data = nx
        self.nullcline_y.data = ny
        eqs = result.equilibria
        self.equilibria.data = {
            "x": [e.state[i] for e in eqs],
            "y": [e.state[j] for e in eqs],
            "kind": [e.kind for e in eqs],
            "color": [KIND_COLORS.get(e.kind, "#6e7781") for e in eqs],
            "eigenvalues": [", ".join(f"{v:.3g}" for v in e.eigenvalues) for e in eqs],
        }
        self.figure.x_range.start, self.figure.x_range.end = result.x_range
        self.figure.y_range.start, self.figure.y_range.end = result.y_range
        self.figure.title.text = f"{self.TITLE} — {result.note}" if result.note else self.TITLE

    def add_extra(self, xs: np.ndarray, ys: np.ndarray, keep: int = 12) -> None:
        data = self.extra.data
        self.extra.data = {"xs": (list(data["xs"]) + [xs])[-keep:],
                           "ys": (list(data["ys"]) + [ys])[-keep:]}

    def clear_extra(self) -> None:
        self.extra.data = {"xs": [], "ys": []}


class GradientPlot:
    """The gradient per parameter by the chosen method beside a reference, with relative errors."""

    def __init__(self):
        self.source = ColumnDataSource({"name": [], "method": [], "reference": [],
                                        "relative_error": []})
        self.figure = _figure(title="Gradient of the loss", x_range=FactorRange(),
                              y_axis_label="∂loss/∂p")
        self.figure.vbar(x=dodge("name", -0.18, range=self.figure.x_range), top="method",
                         width=0.34, source=self.source, color=_color(0), legend_label="method")
        self.figure.vbar(x=dodge("name", 0.18, range=self.figure.x_range), top="reference",
                         width=0.34, source=self.source, color=_color(1),
                         legend_label="reference")
        self.figure.add_tools(HoverTool(tooltips=[("", "@name"), ("method", "@method"),
                                                  ("reference", "@reference"),
                                                  ("relative error", "@relative_error")]))
        self.errors = ColumnDataSource({"name": [], "relative_error": []})
        self.error_figure = _figure(title="Relative error of the method vs the reference",
                                    x_range=self.figure.x_range, y_axis_type="log", height=220)
        self.error_figure.scatter("name", "relative_error", source=self.errors, size=10,
                                  color=_color(3))

    def show(self, result: GradientResult, visible: Sequence[str] | None = None) -> None:
        keep = [k for k, n in enumerate(result.names) if visible is None or n in visible
                or n.strip("‖") in visible]
        names = [result.names[k] for k in keep]
        ref = result.reference
        rel = result.relative_error
        nan = [math.nan] * len(keep)
        self.figure.x_range.factors = names
        self.source.data = {
            "name": names,
            "method": result.gradient[keep],
            "reference": ref[keep] if ref is not None else nan,
            "relative_error": rel[keep] if rel is not None else nan,
        }
        # a log axis cannot show 0: clip exact agreement to the float64 resolution
        self.errors.data = {
            "name": names,
            "relative_error": np.maximum(rel[keep], 1e-17) if rel is not None else nan,
        }


class FieldPlot:
    """The loss over two parameters as a heatmap, descent arrows, and the current point."""

    def __init__(self):
        self.image = ColumnDataSource({"image": [], "x": [], "y": [], "dw": [], "dh": []})
        self.arrows = ColumnDataSource({"x0": [], "y0": [], "x1": [], "y1": []})
        self.current = ColumnDataSource({"x": [], "y": []})
        self.mapper = LinearColorMapper(palette=Viridis256)
        self.figure = _figure(title="Loss landscape (log10 loss) and −gradient", height=420)
        f = self.figure
        f.image("image", x="x", y="y", dw="dw", dh="dh", source=self.image,
                color_mapper=self.mapper)
        f.segment("x0", "y0", "x1", "y1", source=self.arrows, color="white", line_width=1.5)
        f.scatter("x1", "y1", source=self.arrows, color="white", size=3)
        f.scatter("x", "y", source=self.current, size=14, marker="x", color="#cf222e",
                  line_width=3)
        f.add_layout(ColorBar(color_mapper=self.mapper, width=10), "right")

    def show(self, r: FieldResult, current: tuple[float, float]) -> None:
        tx = np.log10 if r.log_x else (lambda v: np.asarray(v, dtype=float))
        ty = np.log10 if r.log_y else (lambda v: np.asarray(v, dtype=float))
        X, Y = tx(r.xs), ty(r.ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log10(np.maximum(r.loss, 1e-300))
        # gradient in the plotted coordinates (d/d log10 p = p ln10 d/dp)
        gx = r.grad_x * (r.xs[None, :] * np.log(10) if r.log_x else 1.0)
        gy = r.grad_y * (r.ys[:, None] * np.log(10) if r.log_y else 1.0)
        cell_x = (X[-1] - X[0]) / max(len(X) - 1, 1) * 0.8
        cell_y = (Y[-1] - Y[0]) / max(len(Y) - 1, 1) * 0.8
        u, v = -gx / cell_x, -gy / cell_y
        norm = np.hypot(u, v)
        ok = np.isfinite(norm) & (norm > 0)
        norm = np.where(ok, norm, 1.0)
        GX, GY = np.meshgrid(X, Y)
        self.image.data = {"image": [z], "x": [X[0]], "y": [Y[0]], "dw": [X[-1] - X[0]],
                           "dh": [Y[-1] - Y[0]]}
        self.arrows.data = {"x0": GX.ravel(), "y0": GY.ravel(),
                            "x1": (GX + np.where(ok, -gx / norm, 0)).ravel(),
                            "y1": (GY + np.where(ok, -gy / norm, 0)).ravel()}
        self.current.data = {"x": [float(tx(current[0]))], "y": [float(ty(current[1]))]}
        self.figure.xaxis.axis_label = f"log10 {r.x_name}" if r.log_x else r.x_name
        self.figure.yaxis.axis_label = f"log10 {r.y_name}" if r.log_y else r.y_name
        finite = z[np.isfinite(z)]
        if finite.size:
            self.mapper.low, self.mapper.high = float(finite.min()), float(finite.max())


class SpectrumPlot:
    """Hessian eigenvalues on a log scale and the top eigenvectors as bars over the parameters."""

    def __init__(self):
        self.eigenvalues = ColumnDataSource({"index": [], "magnitude": [], "sign": [],
                                             "color": []})
        self.vectors = ColumnDataSource({"name": [], "v1": [], "v2": []})
        self.figure = _figure(title="Hessian eigenvalues |λ|", y_axis_type="log",
                              x_axis_label="index (ascending λ)")
        self.figure.scatter("index", "magnitude", source=self.eigenvalues, size=10,
                            color="color", legend_field="sign")
        self.vector_figure = _figure(title="Top eigenvectors", x_range=FactorRange())
        r = self.vector_figure.x_range
        self.vector_figure.vbar(x=dodge("name", -0.18, range=r), top="v1", width=0.34,
                                source=self.vectors, color=_color(0), legend_label="largest |λ|")
        self.vector_figure.vbar(x=dodge("name", 0.18, range=r), top="v2", width=0.34,
                                source=self.vectors, color=_color(1), legend_label="second")

    def show(self, spec: Spectrum) -> None:
        lam = spec.eigenvalues
        mags = np.maximum(np.abs(lam), 1e-300)
        self.eigenvalues.data = {
            "index": np.arange(len(lam)),
            "magnitude": mags,
            "sign": ["λ > 0" if v > 0 else "λ ≤ 0" for v in lam],
            "color": [_color(0) if v > 0 else _color(3) for v in lam],
        }
        order = np.argsort(-np.abs(lam))
        v1 = spec.eigenvectors[:, order[0]]
        v2 = spec.eigenvectors[:, order[1]] if len(order) > 1 else np.zeros_like(v1)
        self.vector_figure.x_range.factors = list(spec.names)
        self.vectors.data = {"name": list(spec.names), "v1": v1, "v2": v2}


class TrainingPlot:
    """The loss per step of a fit, and the current prediction against the data."""

    def __init__(self, states: Sequence[str]):
        self.loss = ColumnDataSource({"step": [], "loss": []})
        self.figure = _figure(title="Training loss", y_axis_type="log", x_axis_label="step",
                              height=260)
        self.figure.line("step", "loss", source=self.loss, line_width=2, color=_color(0))
        self.prediction = TrajectoryPlot(states)
        self.prediction.figure.title.text = "Prediction vs data"
