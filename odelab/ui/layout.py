"""The explorer's widgets and page layout: views of the Explorer's parameters.

Every widget is built from the current value of one Explorer parameter and linked to it both
ways; sliders send their value only when released (`value_throttled`), so a drag costs one
computation, not one per pixel.

Texts that change (status, busy text, statistics, the gradient check report) are raw Bokeh `Div`s
set by odelab (`LiveHTML`): a change of a Panel markup pane resends the pane's stylesheets as
links to Panel's CDN, even with inline resources, and nothing may load from outside the page's
server.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import panel as pn
from bokeh.models import CustomJSTickFormatter, Div

from .options import (
    TOLERANCES,
    VIEW_REQUESTS,
    method_options,
    planned_memory_text,
    solver_groups,
)

if TYPE_CHECKING:  # the explorer builds its layout from here; it is not imported at run time
    from .explorer import Explorer

CONTROL_WIDTH = 300
_LOG_FORMAT_JS = "return Number(Math.pow(10, tick).toPrecision(3))"
# status colours by level (background, text, border), as Bootstrap's alerts
STATUS_STYLES = {
    "info": ("#cff4fc", "#055160", "#9eeaf9"),
    "success": ("#d1e7dd", "#0a3622", "#a3cfbb"),
    "warning": ("#fff3cd", "#664d03", "#ffe69c"),
    "danger": ("#f8d7da", "#58151c", "#f1aeb5"),
}


class LiveHTML:
    """HTML shown in a raw Bokeh `Div` that odelab sets directly (see the module docstring).

    `object` is the HTML (as on a Panel pane); the owner pushes the change to notebook pages.
    """

    def __init__(self, text: str = "", **styles: str):
        self.div = Div(text=text, styles=dict(styles), sizing_mode="stretch_width")

    @property
    def object(self) -> str:
        return self.div.text

    @object.setter
    def object(self, text: str) -> None:
        self.div.text = text

    def __panel__(self) -> pn.pane.Bokeh:
        return pn.pane.Bokeh(self.div, sizing_mode="stretch_width")


def _status_styles(level: str) -> dict[str, str]:
    background, color, border = STATUS_STYLES.get(level, STATUS_STYLES["info"])
    return {"background-color": background, "color": color, "border": f"1px solid {border}",
            "border-radius": "6px", "padding": "10px 14px", "font-size": "13px"}


def status_view(ex: Explorer) -> LiveHTML:
    """The status line: the explorer's `status` in the colour of its `status_level`."""
    view = LiveHTML()

    def show(*_: Any) -> None:
        view.object = html.escape(ex.status or "Ready.")
        view.div.styles = _status_styles(ex.status_level)

    show()
    ex.param.watch(show, ["status", "status_level"])
    return view


STAGE_LABELS = {"trajectory": "trajectory", "phase": "phase plane", "gradient": "gradient",
                "reference": "reference gradient"}
_STAGE_MARKS = {"waiting": ("⋯", "#57606a", "waiting"), "running": ("⟳", "#0969da", "computing…"),
                "done": ("✓", "#1a7f37", ""), "failed": ("✗", "#cf222e", "failed"),
                "skipped": ("–", "#8c959f", "not computed")}


def stage_text(status: dict, names: list[str] | None = None) -> str:
    """HTML of each view's progress: a marker, its name, and its seconds once done."""
    parts = []
    for name in names or list(status):
        entry = status.get(name)
        if entry is None:
            continue
        mark, color, word = _STAGE_MARKS.get(entry.get("state", ""), ("", "#57606a", ""))
        if "seconds" in entry:
            word = f"{word} {entry['seconds']:.2f} s".strip()
        label = html.escape(STAGE_LABELS.get(name, name))
        parts.append(f"<span style='color:{color}'>{mark} {label}"
                     f"{' ' + html.escape(word) if word else ''}</span>")
    return " &nbsp;·&nbsp; ".join(parts)


def stage_view(ex: Explorer, names: list[str] | None = None) -> LiveHTML:
    """The progress of the views of the last request (`stage_status`): each view's own marker."""
    view = LiveHTML(**{"font-size": "12px"})

    def show(*_: Any) -> None:
        view.object = stage_text(ex.stage_status, names)

    show()
    ex.param.watch(show, ["stage_status"])
    return view


def progress_view(ex: Explorer) -> LiveHTML:
    """The header: what the explorer is busy with (while it is) above every view's marker.

    One `Div` for both, so the busy line and the markers always reach the page together: as two
    Divs, a page was seen keeping the last busy text after the markers said every view was done.
    """
    view = LiveHTML(**{"font-size": "12px"})

    def show(*_: Any) -> None:
        busy = (f"<div style='color:#57606a;font-size:13px'>{html.escape(ex.busy_text)}</div>"
                if ex.busy else "")
        view.object = busy + stage_text(ex.stage_status)

    show()
    ex.param.watch(show, ["busy", "busy_text", "stage_status"])
    return view


def _link(widget: Any, explorer: Explorer, name: str, *, event: str = "value",
          to_widget: Callable = lambda v: v, from_widget: Callable = lambda v: v) -> None:
    """Keep `widget.<event>` and `explorer.<name>` in step (guarded against echo loops)."""

    def push(e):
        value = from_widget(e.new)
        if getattr(explorer, name) != value:
            setattr(explorer, name, value)

    def pull(e):
        value = to_widget(e.new)
        if widget.value != value:
            widget.value = value

    widget.param.watch(push, event)
    explorer.param.watch(pull, name)


def _nearest(options: list[float], value: float) -> float:
    return min(options, key=lambda o: abs(math.log10(o) - math.log10(value)))


def _tolerance_slider(explorer: Explorer, name: str) -> pn.widgets.DiscreteSlider:
    options = {f"1e-{round(-math.log10(v))}": v for v in TOLERANCES}
    values = list(options.values())
    widget = pn.widgets.DiscreteSlider(label=name, options=options,
                                       value=_nearest(values, getattr(explorer, name)),
                                       width=CONTROL_WIDTH)
    _link(widget, explorer, name, event="value_throttled",
          to_widget=lambda v: _nearest(values, v))
    return widget


def parameter_slider(explorer: Explorer, name: str) -> pn.widgets.FloatSlider:
    """A slider for one scalar parameter from its `param_info` (range, log scale, unit)."""
    info = explorer.system.param_info[name]
    label = f"{name} [{info.unit}]" if info.unit else name
    value = explorer.values[name]
    if info.log:
        lo, hi = math.log10(info.lo), math.log10(info.hi)
        slider = pn.widgets.FloatSlider(
            label=f"{label} (log scale)", start=lo, end=hi, step=(hi - lo) / 400,
            value=math.log10(value), width=CONTROL_WIDTH,
            # one formatter per slider: a Bokeh model can belong to only one document
            format=CustomJSTickFormatter(code=_LOG_FORMAT_JS))
        to_value, to_slider = (lambda v: 10.0**v), math.log10
    else:
        slider = pn.widgets.FloatSlider(label=label, start=info.lo, end=info.hi,
                                        step=(info.hi - info.lo) / 400, value=value,
                                        width=CONTROL_WIDTH)
        to_value, to_slider = float, float
    if info.description:
        slider.description = info.description

    def push(e):
        if e.new is None:
            return
        new = to_value(e.new)
        if not math.isclose(explorer.values.get(name, math.nan), new, rel_tol=1e-12):
            explorer.set_value(name, new)

    def pull(e):
        new = e.new.get(name)
        if new is None or (info.log and new <= 0):  # not representable on this slider
            return
        target = to_slider(new)
        if not math.isclose(slider.value, target, rel_tol=1e-12, abs_tol=1e-15):
            slider.value = min(max(target, slider.start), slider.end)

    slider.param.watch(push, "value_throttled")
    explorer.param.watch(pull, "values")
    return slider


def _initial_state_inputs(explorer: Explorer) -> list[pn.widgets.FloatInput]:
    inputs = []
    for k, state in enumerate(explorer.system.states):
        widget = pn.widgets.FloatInput(label=f"{state}(t0)", value=explorer.y0[k], width=90)

        def push(e, k=k):
            if e.new is not None and explorer.y0[k] != e.new:
                y0 = list(explorer.y0)
                y0[k] = float(e.new)
                explorer.y0 = y0

        def pull(e, k=k, widget=widget):
            if widget.value != e.new[k]:
                widget.value = e.new[k]

        widget.param.watch(push, "value")
        explorer.param.watch(pull, "y0")
        inputs.append(widget)
    return inputs


def build_layout(ex: Explorer) -> tuple[pn.viewable.Viewable, dict[str, Any]]:
    """The page: controls on the left, views in tabs on the right, status on top."""
    w: dict[str, Any] = {}
    w["solver"] = pn.widgets.Select(label="Solver", groups=solver_groups(), value=ex.solver,
                                    width=CONTROL_WIDTH)
    _link(w["solver"], ex, "solver")
    w["method"] = pn.widgets.Select(label="Gradient method",
                                    options=method_options(VIEW_REQUESTS.get(ex.view),
                                                           ex.method_names),
                                    value=ex.method, width=CONTROL_WIDTH)
    _link(w["method"], ex, "method")
    w["method_memory"] = pn.pane.Markdown(
        planned_memory_text(ex.system, ex.method_names, int(ex.n_save)), width=CONTROL_WIDTH,
        styles={"font-size": "smaller"})
    w["reference"] = pn.widgets.Select.from_param(ex.param.reference, label="Reference gradient",
                                                  width=CONTROL_WIDTH)
    w["rtol"] = _tolerance_slider(ex, "rtol")
    w["atol"] = _tolerance_slider(ex, "atol")
    w["params"] = {n: parameter_slider(ex, n) for n in ex.values}
    w["y0"] = _initial_state_inputs(ex)
    w["t0"] = pn.widgets.FloatInput.from_param(ex.param.t0, label="t0", width=90)
    w["t1"] = pn.widgets.FloatInput.from_param(ex.param.t1, label="t1", width=90)
    w["n_save"] = pn.widgets.IntInput.from_param(ex.param.n_save, label="save points", width=100)
    w["states"] = pn.widgets.MultiChoice.from_param(ex.param.states, label="States to plot",
                                                    width=CONTROL_WIDTH)
    w["shown_params"] = pn.widgets.MultiChoice.from_param(
        ex.param.shown_params, label="Parameters in the gradient view", width=CONTROL_WIDTH)
    w["x_state"] = pn.widgets.Select.from_param(ex.param.x_state, label="phase x", width=140)
    w["y_state"] = pn.widgets.Select.from_param(ex.param.y_state, label="phase y", width=140)

    def relabel_methods(e):
        # the menu marks methods that cannot serve the view in front, with the reason
        w["method"].options = method_options(VIEW_REQUESTS.get(e.new), ex.method_names)

    ex.param.watch(relabel_methods, "view")

    def replan_memory(e):
        w["method_memory"].object = planned_memory_text(ex.system, ex.method_names, int(e.new))

    ex.param.watch(replan_memory, "n_save")

    controls = pn.Column(
        pn.pane.Markdown(f"### {ex.system.name}\n{ex.system.description}",
                         width=CONTROL_WIDTH),
        w["solver"], w["method"], w["method_memory"], w["rtol"], w["atol"],
        pn.pane.Markdown("**Parameters**"), *w["params"].values(),
        pn.pane.Markdown("**Initial state and time span**"),
        pn.GridBox(*w["y0"], ncols=3),
        pn.Row(w["t0"], w["t1"], w["n_save"]),
        w["states"],
        width=CONTROL_WIDTH + 20,
    )

    p = ex.plots
    bokeh = lambda fig: pn.pane.Bokeh(fig, sizing_mode="stretch_width")  # noqa: E731
    clear = pn.widgets.Button(label="Clear clicked trajectories", width=220)
    clear.on_click(ex.clear_trajectories)
    w["phase_stage"] = stage_view(ex, ["phase"])
    phase_tab = pn.Column(pn.Row(w["x_state"], w["y_state"], clear), w["phase_stage"],
                          bokeh(p.phase.figure), sizing_mode="stretch_width")

    check = pn.widgets.Button(label="Check gradient (ol.check_gradient)", color="primary",
                              width=280)
    check.on_click(ex.run_check)
    w["check_report"] = LiveHTML(ex._check_report)
    w["gradient_stage"] = stage_view(ex, ["gradient", "reference"])
    gradient_tab = pn.Column(
        pn.Row(w["reference"], w["shown_params"]),
        pn.Row(pn.widgets.Checkbox.from_param(ex.param.compute_gradient,
                                              label="recompute on every change"),
               pn.widgets.Checkbox.from_param(ex.param.compute_reference,
                                              label="with reference")),
        w["gradient_stage"], bokeh(p.gradient.figure), bokeh(p.gradient.error_figure), check,
        w["check_report"],
        sizing_mode="stretch_width")

    field_button = pn.widgets.Button(label="Compute gradient field", color="primary")
    field_button.on_click(ex.compute_field)
    field_tab = pn.Column(
        pn.Row(pn.widgets.Select.from_param(ex.param.field_x, label="x parameter", width=140),
               pn.widgets.Select.from_param(ex.param.field_y, label="y parameter", width=140),
               pn.widgets.IntSlider.from_param(ex.param.field_n, label="points per axis"),
               field_button),
        pn.indicators.Progress.from_param(ex.param.progress, max=100, width=400),
        bokeh(p.field.figure), sizing_mode="stretch_width")

    hessian_button = pn.widgets.Button(label="Compute Hessian spectrum", color="primary")
    hessian_button.on_click(ex.compute_spectrum)
    hessian_tab = pn.Column(hessian_button, bokeh(p.spectrum.figure),
                            bokeh(p.spectrum.vector_figure), sizing_mode="stretch_width")

    training_tab = _training_tab(ex)
    w["stats"] = LiveHTML(_stats_table(ex.stats))
    ex.param.watch(lambda e: setattr(w["stats"], "object", _stats_table(e.new)), "stats")

    tabs = pn.Tabs(
        ("Trajectory", bokeh(p.trajectory.figure)),
        ("Phase portrait", phase_tab),
        ("Gradient", gradient_tab),
        ("Gradient field", field_tab),
        ("Hessian", hessian_tab),
        ("Training", training_tab),
        ("Stats", w["stats"]),
        dynamic=False, sizing_mode="stretch_width",
    )
    names = [t for t, _ in zip(ex.param.view.objects, tabs)]
    tabs.active = names.index(ex.view)  # the view chosen before the layout was built
    tabs.param.watch(lambda e: setattr(ex, "view", names[e.new]), "active")
    ex.param.watch(lambda e: setattr(tabs, "active", names.index(e.new)), "view")
    w["tabs"] = tabs

    spinner = pn.indicators.LoadingSpinner(value=ex.param.busy, width=24, height=24)
    w["status"] = status = status_view(ex)
    w["stages"] = progress_view(ex)
    header = pn.Row(spinner, w["stages"], sizing_mode="stretch_width")
    layout = pn.Row(controls, pn.Column(header, status, tabs, sizing_mode="stretch_width"),
                    sizing_mode="stretch_width")
    return layout, w


def _stats_table(stats: dict) -> str:
    if not stats:
        return "<p>No solve yet.</p>"
    labels = {
        "steps": "steps", "accepted": "accepted steps", "rejected": "rejected steps",
        "fevals": "vector-field evaluations", "max_steps": "max_steps",
        "solve_ms": "solve time (ms)", "gradient_ms": "gradient time (ms)",
        "reference_ms": "reference gradient time (ms)", "compile_s": "compile time, last (s)",
        "compilations": "compilations so far (ol.compile_count())", "loss": "loss",
    }
    rows = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{labels.get(k, k)}</th>"
        f"<td>{v:.4g}</td></tr>" if isinstance(v, float) else
        f"<tr><th style='text-align:left;padding-right:1em'>{labels.get(k, k)}</th>"
        f"<td>{v}</td></tr>"
        for k, v in stats.items()
    )
    return f"<table>{rows}</table>"


def _training_tab(ex: Explorer) -> pn.viewable.Viewable:
    if ex.training is None:
        return pn.pane.Markdown("Training needs `ol.fit`, which this installation does not have.")
    return ex.training.__panel__()
