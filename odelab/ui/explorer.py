"""`Explorer`: the interactive view of a System or Objective (a Panel Viewer).

Its state lives in `param` parameters (solver, method, rtol, atol, parameter values, y0, time
span, ...); the widgets are views of those parameters, and so are the plots. Setting a parameter
from code does what moving the matching widget does, which is how the tests drive it.

Requests are numbered per kind of view: a result is shown only if no newer request of the same
kind was made while it was computed, so a slow result can never overwrite a newer one. With
`background=True` the computation runs on a worker thread (the page stays responsive while a
program compiles); queued requests that are already stale are skipped without computing.
"""

from __future__ import annotations

import dataclasses
import html
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import panel as pn
import param
from bokeh.events import Tap

from .._compilations import compile_count
from .._errors import InputError
from .._solvers import SOLVERS
from ..methods import METHODS, methods
from .compute import Engine, GradientResult, PhaseResult, Settings, Trajectory, plain_error
from .objective import Objective
from .plots import FieldPlot, GradientPlot, PhasePlot, SpectrumPlot, TrainingPlot, TrajectoryPlot

TOLERANCES = [10.0**-k for k in range(2, 15)]
VIEW_REQUESTS = {"Gradient": "gradient", "Gradient field": "gradient", "Hessian": "hessian"}
_REQUEST_WORDS = {"gradient": "gradients", "hessian": "Hessians"}


def solver_groups() -> dict[str, list[str]]:
    """Solver names grouped for the solver menu: automatic, explicit, stiff."""
    return {
        "automatic": ["auto"],
        "explicit (non-stiff)": [n for n, s in SOLVERS.items() if not s.stiff and s.adaptive],
        "implicit (stiff)": [n for n, s in SOLVERS.items() if s.stiff and s.adaptive],
    }


def method_reason(name: str, request: str) -> str:
    """Why gradient method `name` cannot serve `request`, or "" when it can (capability table)."""
    if name == "auto":
        return ""
    caps = methods()[name]
    if caps.supports(request):
        return ""
    if request in ("hvp", "hessian"):
        return f"no {_REQUEST_WORDS.get(request, request)}: it has no second-order route"
    return f"no {_REQUEST_WORDS.get(request, request)}: it goes neither forward nor reverse"


def method_options(request: str | None) -> dict[str, str]:
    """Menu labels → method names; methods that cannot serve `request` say why in the label."""
    options = {"auto (odelab picks)": "auto"}
    for row in methods():
        label = row.name if row.capabilities.exact else f"{row.name} (approximate)"
        reason = method_reason(row.name, request) if request else ""
        options[f"{label} ✗ {reason}" if reason else label] = row.name
    return options


def _optional(name: str) -> Callable | None:
    """`odelab.<name>` if the module providing it is installed, else None."""
    import odelab

    try:
        return getattr(odelab, name)
    except (AttributeError, ImportError):
        return None


@dataclasses.dataclass
class MainResult:
    """What one slider move produces: trajectory, phase plane and gradient (each may fail)."""

    settings: Settings
    trajectory: Trajectory
    phase: PhaseResult | None = None
    gradient: GradientResult | None = None
    errors: list[str] = dataclasses.field(default_factory=list)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    compile_seconds: float = 0.0


class Explorer(pn.viewable.Viewer):
    """Interactive explorer of an ODE system: trajectories, phase plane, gradients, spectra.

    Build it with `ol.explore(system_or_objective)`; display it in a notebook, wrap it with
    `pn.ipywidget(explorer)`, or serve it with `odelab serve MODULE:OBJECT`.
    """

    solver = param.Selector(default="auto", objects=["auto", *SOLVERS], doc="ODE solver.")
    method = param.Selector(default="auto", objects=["auto", *METHODS],
                            doc="Gradient method used by the gradient views.")
    reference = param.Selector(default="finite-difference",
                               objects=["finite-difference", "direct"],
                               doc="Method of the reference gradient (run at rtol 1e-10).")
    rtol = param.Number(default=1e-6, bounds=(1e-14, 0.1), doc="Relative tolerance.")
    atol = param.Number(default=1e-8, bounds=(1e-16, 1.0), doc="Absolute tolerance.")
    values = param.Dict(default={}, doc="Values of the scalar parameters, by name.")
    y0 = param.List(default=[], item_type=float, doc="Initial state.")
    t0 = param.Number(default=0.0, doc="Start of the time span.")
    t1 = param.Number(default=10.0, doc="End of the time span.")
    n_save = param.Integer(default=201, bounds=(2, 100_000), doc="Number of save points.")
    states = param.ListSelector(default=[], objects=[], doc="States drawn in the trajectory.")
    shown_params = param.ListSelector(default=[], objects=[],
                                      doc="Parameters drawn in the gradient view.")
    x_state = param.Selector(default=None, objects=[], doc="Phase plane horizontal axis.")
    y_state = param.Selector(default=None, objects=[], doc="Phase plane vertical axis.")
    compute_gradient = param.Boolean(default=True, doc="Recompute the gradient on every change.")
    compute_reference = param.Boolean(default=True, doc="Also compute the reference gradient.")
    field_x = param.Selector(default=None, objects=[], doc="Gradient field horizontal parameter.")
    field_y = param.Selector(default=None, objects=[], doc="Gradient field vertical parameter.")
    field_n = param.Integer(default=12, bounds=(3, 64), doc="Gradient field points per axis.")
    view = param.Selector(default="Trajectory", objects=[
        "Trajectory", "Phase portrait", "Gradient", "Gradient field", "Hessian", "Training",
        "Stats"], doc="The tab in front (decides which methods the menu marks as unusable).")
    background = param.Boolean(default=False, doc="Compute on a worker thread.")

    # outputs (read-only for users)
    status = param.String(default="", doc="What happened last, in plain words.")
    status_level = param.Selector(default="info", objects=["info", "success", "warning", "danger"])
    busy = param.Boolean(default=False)
    busy_text = param.String(default="")
    progress = param.Integer(default=0, bounds=(0, 100))
    stats = param.Dict(default={})
    dropped = param.Integer(default=0, doc="Results discarded because a newer request existed.")

    def __init__(self, objective: Objective, **params: Any):
        self.objective = objective
        self.system = system = objective.system
        self.engine = Engine(objective)
        names = list(system.param_names)
        span_given = "t0" in params or "t1" in params
        # methods registered after this module was imported belong in the menu too
        type(self).param.method.objects = ["auto", *methods().names()]
        super().__init__(**params)
        self._configure_parameters(names, span_given)
        self._requests: dict[str, int] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []
        self._seen_static: set = set()
        self._last: MainResult | None = None
        self._layout = None
        self._check_report = ""
        self.spectrum = None  # the last Hessian spectrum shown
        self.plots = _Plots(system.states)
        if objective.data is not None:
            self.plots.trajectory.show_data(*objective.data)
            self.plots.training.prediction.show_data(*objective.data)
        self.plots.phase.figure.on_event(Tap, self._on_tap)
        self.training = None
        if _optional("fit") is not None:
            from .training import TrainingPanel

            self.training = TrainingPanel(self)
        self.plots.phase.label(self.x_state, self.y_state)
        self.param.watch(self._on_inputs, ["values", "y0", "t0", "t1", "n_save", "solver",
                                           "rtol", "atol", "method", "reference",
                                           "compute_gradient", "compute_reference", "x_state",
                                           "y_state"])
        self.param.watch(self._on_states, ["states"])
        self.param.watch(self._on_view, ["view"])
        self.param.watch(self._on_shown_params, ["shown_params"])

    def _configure_parameters(self, names: list[str], span_given: bool) -> None:
        system = self.system
        states = list(system.states)
        self.param.states.objects = states
        self.param.shown_params.objects = names
        self.param.x_state.objects = states
        self.param.y_state.objects = states
        self.param.field_x.objects = names
        self.param.field_y.objects = names
        with param.parameterized.discard_events(self):
            if not self.values:
                self.values = {n: float(system.params[n]) for n in names}
            if not self.y0:
                self.y0 = [float(v) for v in system.y0]
            if not span_given:
                self.t0, self.t1 = (float(v) for v in system.t_span)
            self.states = self.states or states
            self.shown_params = self.shown_params or names
            self.x_state = self.x_state or states[0]
            self.y_state = self.y_state or states[min(1, len(states) - 1)]
            self.field_x = self.field_x or (names[0] if names else None)
            self.field_y = self.field_y or (names[1] if len(names) > 1 else None)

    # ---------------------------------------------------------------------------------------
    # the snapshot of the controls
    # ---------------------------------------------------------------------------------------
    def settings(self) -> Settings:
        """The current controls as an immutable snapshot."""
        states = list(self.system.states)
        return Settings(
            values=tuple((k, float(v)) for k, v in self.values.items()),
            y0=tuple(float(v) for v in self.y0), t0=float(self.t0), t1=float(self.t1),
            n_save=int(self.n_save), solver=self.solver, method=self.method,
            rtol=float(self.rtol), atol=float(self.atol), reference=self.reference,
            x_state=states.index(self.x_state), y_state=states.index(self.y_state),
        )

    def set_value(self, name: str, value: float) -> None:
        """Set one parameter (what moving its slider does)."""
        if name not in self.values:
            raise InputError(f"{name!r} is not a scalar parameter of {self.system.name!r}. "
                             f"Parameters: {', '.join(self.values)}.")
        self.values = {**self.values, name: float(value)}

    # ---------------------------------------------------------------------------------------
    # scheduling: numbered requests, optional worker thread
    # ---------------------------------------------------------------------------------------
    def _submit(self, kind: str, compute: Callable[[], Any], apply: Callable[[Any], None],
                busy_text: str = "Computing…", slow: bool = True) -> None:
        with self._lock:
            rid = self._requests[kind] = self._requests.get(kind, 0) + 1
        # the busy indicator costs a page update: only for work that takes visible time
        # (compiling, buttons) or that runs in the background
        if slow or self.background:
            self.busy, self.busy_text = True, busy_text
        doc = pn.state.curdoc

        def stale() -> bool:
            return self._requests.get(kind) != rid

        def work() -> None:
            if stale():  # a newer request is queued behind this one: skip the work
                self._finish(doc, self._drop)
                return
            try:
                result, error = compute(), None
            except Exception as err:  # shown in the status area; the last plots stay
                result, error = None, plain_error(err)

            def finish() -> None:
                if stale():
                    self._drop()
                    return
                with pn.io.hold():  # one batch of model changes for all plots
                    if error is not None:
                        self._report(error, "danger")
                    else:
                        apply(result)
                    self.busy = False

            self._finish(doc, finish)

        if self.background:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="odelab")
            self._pending.append(self._executor.submit(work))
        else:
            work()

    def _drop(self) -> None:
        self.dropped += 1

    @staticmethod
    def _finish(doc: Any, callback: Callable[[], None]) -> None:
        # under `panel serve`, models may only change on the document's own event loop
        if doc is not None and getattr(doc, "session_context", None) is not None:
            doc.add_next_tick_callback(callback)
        else:
            callback()

    def wait(self, timeout: float = 600.0) -> None:
        """Block until background computations have finished (for scripts and tests)."""
        deadline = time.monotonic() + timeout
        while self._pending:
            self._pending.pop(0).result(timeout=max(deadline - time.monotonic(), 0.0))

    def _report(self, text: str, level: str = "info") -> None:
        self.status, self.status_level = text, level

    # ---------------------------------------------------------------------------------------
    # main view: trajectory, phase plane, gradient
    # ---------------------------------------------------------------------------------------
    def refresh(self, *_: Any) -> None:
        """Recompute the trajectory, phase plane and gradient for the current controls."""
        s = self.settings()
        static = (s.solver, s.method, s.n_save, s.reference, s.x_state, s.y_state)
        text, slow = "Computing…", static not in self._seen_static
        if slow:
            text = (f"Compiling for solver={s.solver!r}, method={s.method!r}, {s.n_save} save "
                    "points: the first run of a new combination takes a few seconds; moving "
                    "sliders afterwards does not compile again.")
        self._submit("main", lambda: self._compute_main(s),
                     lambda r: self._apply_main(r, static), busy_text=text, slow=slow)

    def _on_inputs(self, *events: Any) -> None:
        if any(e.name in ("x_state", "y_state") for e in events):
            self.plots.phase.label(self.x_state, self.y_state)
        self.refresh()

    def _compute_main(self, s: Settings) -> MainResult:
        traj = self.engine.trajectory(s)  # a failed solve raises: the last plots stay
        result = MainResult(s, traj.value, timings={"solve": traj.seconds})
        result.compile_seconds += traj.seconds if traj.compiled else 0.0
        try:
            result.phase = self.engine.phase(s, traj.value)
        except Exception as err:
            result.errors.append(f"Phase plane: {plain_error(err)}")
        if self.compute_gradient:
            try:
                g = self.engine.gradient(s)
                result.gradient = g.value
                result.timings["gradient"] = g.seconds
                result.compile_seconds += g.seconds if g.compiled else 0.0
                # the reference (tight tolerances) costs several solves: only for the view in front
                if self.compute_reference and self.view == "Gradient":
                    r = self.engine.reference_gradient(s)
                    g.value.reference = r.value.gradient
                    result.timings["reference"] = r.seconds
                    result.compile_seconds += r.seconds if r.compiled else 0.0
            except Exception as err:
                result.errors.append(f"Gradient: {plain_error(err)}")
        return result

    def _apply_main(self, r: MainResult, static: tuple) -> None:
        self._seen_static.add(static)
        self._last = r
        p = self.plots
        p.trajectory.show(r.trajectory)
        p.trajectory.set_visible(self.states)
        if r.phase is not None:
            p.phase.show(r.trajectory, r.settings.x_state, r.settings.y_state, r.phase)
        if r.gradient is not None:
            p.gradient.show(r.gradient, self.shown_params)
        self.stats = {
            **r.trajectory.stats,
            "solve_ms": 1e3 * r.timings.get("solve", math.nan),
            "gradient_ms": 1e3 * r.timings.get("gradient", math.nan),
            "reference_ms": 1e3 * r.timings.get("reference", math.nan),
            "compile_s": r.compile_seconds,
            "compilations": compile_count(),
            "loss": r.gradient.loss if r.gradient is not None else math.nan,
        }
        if r.errors:
            self._report(" ".join(r.errors), "warning")
        elif r.compile_seconds > 0:
            self._report(f"{r.trajectory.message} Compiled in {r.compile_seconds:.1f} s; "
                         "slider moves now reuse the compiled programs.", "success")
        else:
            self._report(r.trajectory.message, "success")

    def _on_view(self, event: Any) -> None:
        last = self._last
        missing = last is not None and last.gradient is not None and last.gradient.reference is None
        if event.new == "Gradient" and self.compute_reference and missing:
            self.refresh()

    def _on_states(self, *_: Any) -> None:
        self.plots.trajectory.set_visible(self.states)

    def _on_shown_params(self, *_: Any) -> None:
        if self._last is not None and self._last.gradient is not None:
            self.plots.gradient.show(self._last.gradient, self.shown_params)

    # ---------------------------------------------------------------------------------------
    # phase plane clicks
    # ---------------------------------------------------------------------------------------
    def _on_tap(self, event: Tap) -> None:
        self.start_trajectory_at(event.x, event.y)

    def start_trajectory_at(self, x: float, y: float) -> None:
        """Draw an extra trajectory in the phase plane starting from (x, y) (what a click does).

        The two plotted states start at (x, y); the other states at the current initial state.
        """
        s = self.settings()
        y0 = list(s.y0)
        y0[s.x_state], y0[s.y_state] = float(x), float(y)

        def compute():
            return self.engine.trajectory(s, y0=y0).value

        def apply(traj: Trajectory) -> None:
            self.plots.phase.add_extra(traj.ys[:, s.x_state], traj.ys[:, s.y_state])
            self._report(f"Trajectory from ({x:.3g}, {y:.3g}): {traj.message}", "success")

        self._submit("tap", compute, apply, slow=False)

    def clear_trajectories(self, *_: Any) -> None:
        """Remove the trajectories started by clicks."""
        self.plots.phase.clear_extra()

    # ---------------------------------------------------------------------------------------
    # button-driven views: gradient field, Hessian spectrum, gradient check
    # ---------------------------------------------------------------------------------------
    def compute_field(self, *_: Any) -> None:
        """Compute the loss and its gradient over the (field_x, field_y) parameter grid."""
        s, x, y, n = self.settings(), self.field_x, self.field_y, int(self.field_n)
        self.progress = 0

        def progress(fraction: float) -> None:
            self.progress = int(round(100 * fraction))

        def compute():
            return self.engine.field(s, x, y, n, progress=progress)

        def apply(r):
            values = dict(s.values)
            self.plots.field.show(r, (values[x], values[y]))
            self.progress = 100
            self._report(f"Loss landscape over {x} × {y} ({n}×{n} points).", "success")

        self._submit("field", compute, apply, busy_text=f"Computing {n}×{n} gradients…")

    def compute_spectrum(self, *_: Any) -> None:
        """Compute the Hessian of the loss and show its spectrum."""
        s = self.settings()

        def apply(out):
            spec = out.value
            self.plots.spectrum.show(spec)
            self.spectrum = spec
            self._report(f"Hessian with method={s.method!r}: condition number "
                         f"{spec.condition_number:.3g}, eigenvalues "
                         f"{', '.join(f'{v:.3g}' for v in spec.eigenvalues)}.", "success")

        self._submit("hessian", lambda: self.engine.spectrum(s), apply,
                     busy_text="Computing the Hessian…")

    def run_check(self, *_: Any) -> None:
        """Run `ol.check_gradient` on the loss, if this installation has it."""
        check = _optional("check_gradient")
        if check is None:
            self._check_report = ("<p><code>ol.check_gradient</code> is not available in this "
                                  "installation of odelab.</p>")
            if self._layout is not None:
                self._widgets["check_report"].object = self._check_report
            self._report("ol.check_gradient is not available in this installation.", "warning")
            return
        s = self.settings()
        fun = self.engine.closed_loss(s)

        def apply(report):
            text = report._repr_html_() if hasattr(report, "_repr_html_") else (
                f"<pre>{html.escape(repr(report))}</pre>")
            self._check_report = text
            if self._layout is not None:
                self._widgets["check_report"].object = text
            ok = getattr(report, "ok", True)
            self._report("Gradient check passed." if ok else "Gradient check found problems.",
                         "success" if ok else "warning")

        self._submit("check", lambda: check(fun, self.engine.params(s)), apply,
                     busy_text="Checking the gradient…")

    # ---------------------------------------------------------------------------------------
    # display
    # ---------------------------------------------------------------------------------------
    def __panel__(self):
        if self._layout is None:
            from .layout import build_layout

            self._layout, self._widgets = build_layout(self)
            if self._last is None:
                self.refresh()
        return self._layout

    def close(self) -> None:
        """Stop the worker thread (if any)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


class _Plots:
    def __init__(self, states):
        self.trajectory = TrajectoryPlot(states)
        self.phase = PhasePlot()
        self.gradient = GradientPlot()
        self.field = FieldPlot()
        self.spectrum = SpectrumPlot()
        self.training = TrainingPlot(states)
