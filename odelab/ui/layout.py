"""The explorer's widgets and page layout: views of the Explorer's parameters.

Every widget is linked both ways to one Explorer parameter; sliders send their value only when
released (`value_throttled`), so a drag costs one computation, not one per pixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import panel as pn
from bokeh.models import CustomJSTickFormatter

from .explorer import (
    TOLERANCES,
    VIEW_REQUESTS,
    Explorer,
    method_options,
    solver_groups,
)

CONTROL_WIDTH = 300
_LOG_FORMAT_JS = "return Number(Math.pow(10, tick).toPrecision(3))"


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
                                    options=method_options(VIEW_REQUESTS.get(ex.view)),
                                    value=ex.method, width=CONTROL_WIDTH)
    _link(w["method"], ex, "method")
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
        w["method"].options = method_options(VIEW_REQUESTS.get(e.new))

    ex.param.watch(relabel_methods, "view")

    controls = pn.Column(
        pn.pane.Markdown(f"### {ex.system.name}\n{ex.system.description}",
                         width=CONTROL_WIDTH),
        w["solver"], w["method"], w["rtol"], w["atol"],
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
    phase_tab = pn.Column(pn.Row(w["x_state"], w["y_state"], clear), bokeh(p.phase.figure),
                          sizing_mode="stretch_width")

    check = pn.widgets.Button(label="Check gradient (ol.check_gradient)", color="primary",
                              width=280)
    check.on_click(ex.run_check)
    w["check_report"] = pn.pane.HTML(ex._check_report, sizing_mode="stretch_width")
    gradient_tab = pn.Column(
        pn.Row(w["reference"], w["shown_params"]),
        pn.Row(pn.widgets.Checkbox.from_param(ex.param.compute_gradient,
                                              label="recompute on every change"),
               pn.widgets.Checkbox.from_param(ex.param.compute_reference,
                                              label="with reference")),
        bokeh(p.gradient.figure), bokeh(p.gradient.error_figure), check, w["check_report"],
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
    w["stats"] = pn.pane.HTML(pn.bind(_stats_table, ex.param.stats), sizing_mode="stretch_width")

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
    tabs.param.watch(lambda e: setattr(ex, "view", names[e.new]), "active")
    ex.param.watch(lambda e: setattr(tabs, "active", names.index(e.new)), "view")
    w["tabs"] = tabs

    spinner = pn.indicators.LoadingSpinner(value=ex.param.busy, width=24, height=24)
    busy_text = pn.pane.Str(pn.bind(lambda b, t: t if b else "", ex.param.busy,
                                    ex.param.busy_text))
    status = pn.pane.Alert(pn.bind(lambda s: s or "Ready.", ex.param.status),
                           alert_type=ex.param.status_level, sizing_mode="stretch_width")
    w["status"] = status
    header = pn.Row(spinner, busy_text, sizing_mode="stretch_width")
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
