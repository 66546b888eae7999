"""`Explorer`: the interactive view of a System or Objective (a Panel Viewer).

Its state lives in `param` parameters (solver, method, rtol, atol, parameter values, y0, time
span, ...); the widgets are views of those parameters, and so are the plots. Setting a parameter
from code does what moving the matching widget does, which is how the tests drive it.

Requests are numbered per kind of view: a result is shown only if no newer request of the same
kind was made while it was computed, so a slow result can never overwrite a newer one. With
`background=True` the computation runs on a worker thread (the page stays responsive while a
program compiles); queued requests that are already stale are skipped without computing.

A slider move is computed in stages, each shown as soon as its own program has run: the
trajectory first, then the phase plane, the gradient and its reference in the order the tab in
front needs them. Nothing visible waits for something invisible: the first trajectory of a new
system does not wait for the gradient to compile. `stage_status` tells each view's state and
seconds; the page shows them next to the busy marker and in the tabs.

In a notebook, results computed on a worker thread are drawn from the kernel's own event loop,
the one that sends the page its updates, so updates never interleave on their way to the page.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import html
import math
import re
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import panel as pn
import param
from bokeh.events import Tap

from .. import _events
from .._compilations import compile_count
from .._errors import InputError, closest, unknown_name
from .._inputs import check_count, check_t_span, check_tolerance, finite_array, scalar
from ..methods import METHODS, methods
from ..solve import SOLVERS, solver_spec
from ..system import Objective
from .ahead import CompileAhead, enabled_by_default
from .compute import (
    CROSS_CHECK,
    Engine,
    GradientResult,
    PhaseResult,
    Settings,
    Timed,
    Trajectory,
    plain_error,
)
from .layout import build_layout
from .notebook import running_loop, shown_when_connected
from .options import explorer_methods, optional, solver_groups
from .plots import FieldPlot, GradientPlot, PhasePlot, SpectrumPlot, TrainingPlot, TrajectoryPlot
from .training import TrainingPanel

# the explorer's outputs: shown, never set by a caller
_OUTPUTS = ("name", "status", "status_level", "busy", "busy_text", "progress", "stats", "dropped")


def _checked_settings(cls: type, system: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The explorer's initial settings (`ol.explore(..., **settings)`) checked with the rules of
    the library's own arguments; InputError naming the setting otherwise."""
    known = [n for n in cls.param if n not in _OUTPUTS]
    out = dict(given)
    for key, value in given.items():
        if key not in known:
            raise InputError(
                f"`{key}` is not a setting of ol.explore.{closest(key, known)} Settings: "
                f"{', '.join(known)}.")
        if key == "solver" and not (isinstance(value, str) and value == "auto"):
            out[key] = solver_spec(value).name
        elif key in ("rtol", "atol"):
            out[key] = check_tolerance(key, value)
        elif key in ("t0", "t1"):
            out[key] = scalar(key, value)
        elif key in ("n_save", "field_n"):
            out[key] = check_count(key, value, example=201 if key == "n_save" else 12)
        elif key == "y0":
            y0 = finite_array("y0", value)
            if y0.shape != (len(system.states),):
                raise InputError(
                    f"`y0` has shape {y0.shape}; {system.name!r} has {len(system.states)} states "
                    f"({', '.join(system.states)}), so y0 needs {len(system.states)} numbers.")
            out[key] = [float(v) for v in y0]
        elif key == "values":
            if not isinstance(value, dict):
                raise InputError(f"`values` must be a dict of parameter values by name; got "
                                 f"{type(value).__name__}.")
            for name, v in value.items():
                if name not in system.param_names:
                    raise unknown_name("values", name, system.param_names)
                scalar(f"values[{name!r}]", v)
            out[key] = {n: float(v) for n, v in value.items()}
        elif key in ("states", "x_state", "y_state"):
            for name in [value] if key != "states" else list(value):
                if name not in system.states:
                    raise unknown_name(key, name, system.states)
        elif key in ("shown_params", "field_x", "field_y"):
            for name in [value] if key not in ("shown_params",) else list(value):
                if name is not None and name not in system.param_names:
                    raise unknown_name(key, name, system.param_names)
    if "t0" in out or "t1" in out:
        check_t_span((out.get("t0", system.t_span[0]), out.get("t1", system.t_span[1])))
    return out


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


@dataclasses.dataclass
class Stage:
    """One part of a request: computed on the request's thread, shown on the main thread."""

    name: str
    compute: Callable[[], Any]
    apply: Callable[[Any], None]
    text: str = "Computing…"  # the busy text while it runs
    needed: Callable[[], bool] | None = None  # asked before it runs (None: always)


class Explorer(pn.viewable.Viewer):
    """Interactive explorer of an ODE system: trajectories, phase plane, gradients, spectra.

    Build it with `ol.explore(system_or_objective)`; display it in a notebook, wrap it with
    `pn.ipywidget(explorer)`, or serve it with `odelab serve MODULE:OBJECT`.
    """

    solver = param.Selector(default="auto", objects=["auto", *SOLVERS], doc="ODE solver.")
    method = param.Selector(default="auto", objects=["auto", *METHODS],
                            doc="Gradient method used by the gradient views.")
    reference = param.Selector(default="auto",
                               objects=["auto", "checkpoint", "forward", "direct",
                                        "finite-difference"],
                               doc="Reference gradient: an accurate method at rtol 1e-10 with "
                                   "its own error estimate ('auto': the method in use if it is "
                                   "exact, else auto's), or finite differences as a cross-check.")
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
    compile_ahead = param.Boolean(default=None, allow_None=True, doc=(
        "Once a request is drawn and the machine is quiet, compile on a low-priority thread "
        "what is likely asked next: the Gradient tab's reference, the next method, the next "
        "solver (odelab.ui.ahead). Only for a displayed explorer. Default: on, unless "
        "ODELAB_COMPILE_AHEAD=0."))

    # outputs (read-only for users)
    status = param.String(default="", doc="What happened last, in plain words.")
    status_level = param.Selector(default="info", objects=["info", "success", "warning", "danger"])
    busy = param.Boolean(default=False)
    busy_text = param.String(default="")
    progress = param.Integer(default=0, bounds=(0, 100))
    stats = param.Dict(default={})
    dropped = param.Integer(default=0, doc="Results discarded because a newer request existed.")
    stage_status = param.Dict(default={}, doc=(
        "Per view of the last slider move (trajectory, phase, gradient, reference): its state "
        "(waiting, running, done, failed, skipped), when it started and how long it took."))

    def __init__(self, objective: Objective, *, engine: Engine | None = None, **params: Any):
        self.objective = objective
        self.system = system = objective.system
        # explorers of one objective may share an engine (and so its compiled programs)
        if engine is not None and engine.objective is not objective:
            raise InputError("`engine` computes for another objective; pass the engine built "
                             "for this one, or none.")
        self.engine = engine if engine is not None else Engine(objective)
        names = list(system.param_names)
        span_given = "t0" in params or "t1" in params
        self.method_names = explorer_methods(system)
        params = _checked_settings(type(self), system, params)
        if params.get("method", "auto") not in self.method_names:
            raise InputError(
                f"`method={params['method']!r}` is not a gradient method for {system.name!r}."
                f"{closest(params['method'], self.method_names)} Choose from: "
                f"{', '.join(self.method_names)}."
            )
        # methods registered after this module was imported belong in the menu too
        type(self).param.method.objects = ["auto", *methods().names()]
        try:
            super().__init__(**params)
        except (ValueError, TypeError) as err:  # param's own checks (bounds, types)
            found = re.search(r"\.(\w+)'", str(err))
            name = found.group(1) if found and found.group(1) in params else None
            given = f"`{name}={params[name]!r:.60}`: " if name else ""
            raise InputError(f"ol.explore: {given}{err}") from None
        self.param.method.objects = self.method_names  # this explorer's menu
        self._configure_parameters(names, span_given)
        self._requests: dict[str, int] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []
        self._for_main_thread: list[Callable[[], None]] = []
        self._seen_static: set = set()
        if self.compile_ahead is None:
            self.compile_ahead = enabled_by_default()
        self.ahead = CompileAhead(busy=functools.partial(_busy, weakref.ref(self)))
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
        if optional("fit") is not None:
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
        self._submit_stages(kind, [Stage(kind, compute, apply, busy_text)], slow=slow)

    def _submit_stages(self, kind: str, stages: list[Stage], slow: bool = True,
                       track: bool = False, done: Callable[[], None] | None = None,
                       order: Callable[[list[Stage]], list[Stage]] | None = None,
                       background: bool | None = None) -> None:
        """One numbered request of `kind`, computed stage by stage, each shown when it is ready.

        The stages run in order on one thread (the worker's with `background=True`); each
        stage's result is handed to the main thread as soon as it is computed, so a view never
        waits for a later stage. A stage whose `needed()` says no when its turn comes is
        skipped. A newer request of the same kind makes the rest stale: its
        results are dropped and its remaining stages are not computed. An error in a stage ends
        the request and shows in the status area (stages that should not end it catch their own
        errors); `done()` runs after the last stage is shown. `order(remaining)`, if given,
        puts the remaining stages in order before each one (the tab in front may change while
        the request runs). With `track`, `stage_status` says
        per stage: waiting, running (with the time it started), done or failed (with its
        seconds), skipped. `background` overrides the explorer's setting for this request.
        """
        on_worker = self.background if background is None else background
        self.ahead.hold()  # what is asked for goes first
        with self._lock:
            rid = self._requests[kind] = self._requests.get(kind, 0) + 1
        # the busy indicator and the stages' markers cost page updates: shown as they change
        # only for work that takes visible time (compiling, buttons) or that runs in the
        # background; otherwise the markers are set once, when the request is done
        live = slow or on_worker
        tracked = [{st.name: {"state": "running", "started": time.time()} if k == 0
                    else {"state": "waiting"} for k, st in enumerate(stages)}]
        if track and live:
            self.stage_status = tracked[0]
        if live:
            self.busy, self.busy_text = True, stages[0].text
            self._push()
        doc, loop = pn.state.curdoc, running_loop()

        def stale() -> bool:
            return self._requests.get(kind) != rid

        def work() -> None:
            queue, skipped, ended = list(stages), [], False
            while queue:
                if order is not None:
                    queue = order(queue)
                st = queue.pop(0)
                if st.needed is not None and not st.needed():  # decided when its turn comes
                    skipped.append(st.name)
                    continue
                if stale():  # a newer request is queued behind this one: skip the work
                    self._finish(doc, self._drop, loop)
                    return
                started = time.time()
                if slow:  # a new combination compiles: the lab's status bar says so meanwhile
                    _events.emit(_events.COMPILING, active=True,
                                 what=f"the explorer's {st.name} for {self.system.name!r}")
                try:
                    result, error = st.compute(), None
                except Exception as err:  # shown in the status area; the last plots stay
                    result, error = None, plain_error(err)
                finally:
                    if slow:
                        _events.emit(_events.COMPILING, active=False, what="")
                seconds = time.time() - started
                # the next stage as things stand (the busy text); it may still be skipped
                if order is not None:
                    queue = order(queue)
                following = None if error is not None else next(
                    (q for q in queue if q.needed is None or q.needed()), None)
                self._finish(doc, functools.partial(finish, st, result, error, seconds,
                                                    following, skipped), loop)
                skipped, ended = [], following is None
                if error is not None:
                    return
            if not ended:  # the stages after the last one shown were skipped at their turn
                self._finish(doc, functools.partial(end, skipped), loop)

        def end(skipped: list[str]) -> None:
            if stale():
                return
            with pn.io.hold():
                if track:
                    self.stage_status = tracked[0] = _track(
                        dict(self.stage_status if live else tracked[0]), None, 0.0, None, None,
                        skipped)
                if done is not None:
                    done()
                if not stale():
                    self.busy = False
            self._push()

        def finish(st: Stage, result: Any, error: str | None, seconds: float,
                   following: Stage | None, skipped: list[str]) -> None:
            if stale():
                self._drop()
                return
            with pn.io.hold():  # one batch of model changes for all plots
                if track:
                    tracked[0] = _track(dict(self.stage_status if live else tracked[0]),
                                        st.name, seconds, error, following, skipped)
                    if live or following is None:
                        self.stage_status = tracked[0]
                if error is not None:
                    self._report(error, "danger")
                else:
                    st.apply(result)
                    if following is None and done is not None:
                        done()
                if stale():  # a newer request, made while showing this one, owns the marker
                    pass
                elif error is not None or following is None:
                    self.busy = False
                elif self.busy:
                    self.busy_text = following.text
            self._push()

        if on_worker:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="odelab")
            self._pending.append(self._executor.submit(work))
        else:
            work()

    def _drop(self) -> None:
        self.dropped += 1

    def _finish(self, doc: Any, callback: Callable[[], None],
                loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Run `callback`, which changes models, where models may change.

        Under `panel serve`: on the document's own event loop. In a notebook, from a worker
        thread: on the kernel's event loop (`loop`), which also sends the page its updates, so
        two threads never write to the comm at once; `wait()` runs whatever that loop has not
        run yet (a loop that is blocked, as in a script driving a browser). Otherwise: here and
        now.
        """
        if doc is not None and getattr(doc, "session_context", None) is not None:
            doc.add_next_tick_callback(callback)
        elif loop is not None and threading.current_thread() is not threading.main_thread():
            with self._lock:
                self._for_main_thread.append(callback)
            loop.call_soon_threadsafe(self._run_main_thread_work)
        else:
            callback()

    def _run_main_thread_work(self) -> None:
        """Run the model changes workers handed to the main thread, each once, in order."""
        while True:
            with self._lock:
                if not self._for_main_thread:
                    return
                callback = self._for_main_thread.pop(0)
            callback()

    def _push(self) -> None:
        """Send changes made directly to Bokeh models (plots, texts) to notebook pages.

        Panel sends changes of its own widgets by itself; changes to raw Bokeh models made from
        kernel code (a cell, a worker) wait for the next such push unless pushed here.
        """
        if self._layout is not None:
            pn.io.push_notebook(self._layout)

    def wait(self, timeout: float = 600.0) -> None:
        """Block until background computations have finished (for scripts and tests).

        In a notebook their results are drawn once the running cell has finished.
        """
        deadline = time.monotonic() + timeout
        while self._pending:
            self._pending.pop(0).result(timeout=max(deadline - time.monotonic(), 0.0))
        if threading.current_thread() is threading.main_thread():
            self._run_main_thread_work()

    def _report(self, text: str, level: str = "info") -> None:
        self.status, self.status_level = text, level

    # ---------------------------------------------------------------------------------------
    # main view: trajectory, phase plane, gradient
    # ---------------------------------------------------------------------------------------
    def refresh(self, *_: Any, background: bool | None = None) -> None:
        """Recompute the trajectory, phase plane and gradient for the current controls.

        Each view is shown as soon as its own program has run: the trajectory first, then the
        views in the order the tab in front needs them (the gradient and its reference before
        the phase plane when the Gradient tab is in front; the phase plane first otherwise).
        The reference is computed only while the Gradient tab is in front. `background`
        overrides the explorer's own setting for this request.
        """
        s = self.settings()
        static = (s.solver, s.method, s.n_save, s.reference, s.x_state, s.y_state)
        text, slow = "Solving…", static not in self._seen_static
        if slow:
            text = (f"Compiling the solve for solver={s.solver!r}, {s.n_save} save points: the "
                    "first run of a new combination takes a few seconds; moving sliders "
                    "afterwards does not compile again.")
        box: dict[str, Any] = {}  # what the worker's stages pass on to later stages

        def trajectory() -> MainResult:
            box["main"] = self._compute_main(s)  # a failed solve raises: the last plots stay
            return box["main"]

        def gradient() -> tuple[Timed | None, str | None]:
            try:
                out = self.engine.gradient(s)
            except Exception as err:
                return None, f"Gradient: {plain_error(err)}"
            box["gradient"] = out
            return out, None

        def reference() -> tuple[Timed | None, str | None]:
            if "gradient" not in box:  # no gradient to compare with
                return None, None
            try:
                return self.engine.reference_gradient(s), None
            except Exception as err:
                return None, f"Gradient: {plain_error(err)}"

        def phase() -> tuple[PhaseResult | None, str | None]:
            try:
                return self.engine.phase(s, box["main"].trajectory), None
            except Exception as err:
                return None, f"Phase plane: {plain_error(err)}"

        def wants_reference() -> bool:
            # asked after each stage: the tab in front when its turn comes decides
            return self.compute_gradient and self.compute_reference and self.view == "Gradient"

        method = "auto" if s.method == "auto" else repr(s.method)
        stages = {
            "trajectory": Stage("trajectory", trajectory, self._show_trajectory, text),
            "phase": Stage("phase", phase, lambda out: self._show_phase(box["main"], *out),
                           "Computing the phase plane (direction field, equilibria)…"),
            "gradient": Stage("gradient", gradient,
                              lambda out: self._show_gradient(box["main"], *out),
                              f"Compiling the gradient (method {method}): the trajectory "
                              "is already drawn." if slow else
                              f"Computing the gradient (method {method})…",
                              needed=lambda: self.compute_gradient),
            "reference": Stage("reference", reference,
                               lambda out: self._show_reference(box["main"], *out),
                               f"Computing the reference gradient ({s.reference}, tight "
                               "tolerances)…", needed=wants_reference),
        }
        def order(queue: list[Stage]) -> list[Stage]:
            # what the tab in front shows comes first (the tab in front when the turn comes)
            ranks = (["trajectory", "gradient", "reference", "phase"] if self.view == "Gradient"
                     else ["trajectory", "phase", "gradient", "reference"])
            return sorted(queue, key=lambda st: ranks.index(st.name))

        self._submit_stages("main", order(list(stages.values())), slow=slow, track=True,
                            done=lambda: self._main_done(box["main"], static), order=order,
                            background=background)

    def _on_inputs(self, *events: Any) -> None:
        if any(e.name in ("x_state", "y_state") for e in events):
            self.plots.phase.label(self.x_state, self.y_state)
        self.refresh()

    def _compute_main(self, s: Settings) -> MainResult:
        """The first stage of a request: the trajectory (the other views follow it)."""
        traj = self.engine.trajectory(s)  # a failed solve raises: the last plots stay
        result = MainResult(s, traj.value, timings={"solve": traj.seconds})
        result.compile_seconds += traj.seconds if traj.compiled else 0.0
        return result

    def _show_trajectory(self, r: MainResult) -> None:
        self._last = r
        p = self.plots
        p.trajectory.show(r.trajectory)
        p.trajectory.set_visible(self.states)
        self._show_stats(r)
        self._report(r.trajectory.message, "success")

    def _show_phase(self, r: MainResult, phase: PhaseResult | None, error: str | None) -> None:
        if error is not None:
            r.errors.append(error)
            return
        r.phase = phase
        self.plots.phase.show(r.trajectory, r.settings.x_state, r.settings.y_state, phase)

    def _show_gradient(self, r: MainResult, out: Timed | None, error: str | None) -> None:
        if error is not None:
            r.errors.append(error)
            return
        r.gradient = out.value
        r.timings["gradient"] = out.seconds
        r.compile_seconds += out.seconds if out.compiled else 0.0
        self.plots.gradient.show(r.gradient, self.shown_params)

    def _show_reference(self, r: MainResult, out: Timed | None, error: str | None) -> None:
        if error is not None:
            r.errors.append(error)
            return
        if out is None:
            return
        r.timings["reference"] = out.seconds
        r.compile_seconds += out.seconds if out.compiled else 0.0
        if r.gradient is not None:
            r.gradient.compare_with(out.value)
            self.plots.gradient.show(r.gradient, self.shown_params)

    def _show_stats(self, r: MainResult) -> None:
        """The Stats tab: after the trajectory, and again when the request is done."""
        self.stats = {
            **r.trajectory.stats,
            "solve_ms": 1e3 * r.timings.get("solve", math.nan),
            "gradient_ms": 1e3 * r.timings.get("gradient", math.nan),
            "reference_ms": 1e3 * r.timings.get("reference", math.nan),
            "compile_s": r.compile_seconds,
            "compilations": compile_count(),
            "loss": r.gradient.loss if r.gradient is not None else math.nan,
        }

    def _main_done(self, r: MainResult, static: tuple) -> None:
        """After the last stage of a request: the status says how all of it went."""
        self._seen_static.add(static)
        self._plan_ahead(r, static)
        self._show_stats(r)
        if r.errors:
            self._report(" ".join(r.errors), "warning")
        elif r.compile_seconds > 0:
            self._report(f"{r.trajectory.message} Compiled in {r.compile_seconds:.1f} s; "
                         "slider moves now reuse the compiled programs.", "success")
        else:
            self._report(r.trajectory.message, "success")
        skipped = self.stage_status.get("reference", {}).get("state") == "skipped"
        if (self.background and skipped and self.view == "Gradient" and r.gradient is not None
                and self.compute_reference):
            self.refresh()  # the Gradient tab came to the front after the reference was skipped

    def _plan_ahead(self, r: MainResult, static: tuple) -> None:
        """Queue what is likely asked next (odelab.ui.ahead), once this request is drawn."""
        s, ahead, engine = r.settings, self.ahead, self.engine
        ahead.mark_done(("trajectory", s.solver, s.n_save))
        if r.gradient is not None:
            ahead.mark_done(("gradient", s.n_save, s.method, s.solver))
        if not self.compile_ahead or self._layout is None:  # only for a displayed explorer
            return
        items: list = []

        def gradient(method: str, solver: str, seen: tuple | None = None) -> None:
            key = ("gradient", s.n_save, method, solver)
            settings = dataclasses.replace(s, method=method, solver=solver)

            def run() -> None:
                engine.gradient(settings)
                if seen is not None:  # that combination's first request will not compile
                    self._seen_static.add(seen)

            items.append((key, run))

        if (self.compute_gradient and self.compute_reference and s.reference != CROSS_CHECK
                and r.gradient is not None):
            gradient(engine.reference_method(s), s.solver)
        solver = _next_solver(s.solver, r.trajectory.solver)
        if solver is not None:
            items.append((("trajectory", solver, s.n_save),
                          lambda: engine.trajectory(dataclasses.replace(s, solver=solver))))
        if self.compute_gradient:
            following = _next_in(self.method_names, s.method)
            if following is not None:
                gradient(following, s.solver)
            if solver is not None:
                gradient(s.method, solver, seen=(solver, *static[1:]))
        ahead.plan(items)

    def _on_view(self, event: Any) -> None:
        if event.new != "Gradient" or not (self.compute_gradient and self.compute_reference):
            return
        if any(v["state"] in ("waiting", "running") for v in self.stage_status.values()):
            return  # the request in flight decides on the reference when its gradient is done
        last = self._last
        if last is not None and last.gradient is not None and last.gradient.reference is None:
            self.refresh()

    def _on_states(self, *_: Any) -> None:
        self.plots.trajectory.set_visible(self.states)
        self._push()

    def _on_shown_params(self, *_: Any) -> None:
        if self._last is not None and self._last.gradient is not None:
            self.plots.gradient.show(self._last.gradient, self.shown_params)
            self._push()

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
        self._push()

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
        check = optional("check_gradient")
        if check is None:
            self._check_report = ("<p><code>ol.check_gradient</code> is not available in this "
                                  "installation of odelab.</p>")
            if self._layout is not None:
                self._widgets["check_report"].object = self._check_report
            self._report("ol.check_gradient is not available in this installation.", "warning")
            self._push()
            return
        s = self.settings()
        fun = self.engine.closed_loss(s)
        doc = pn.state.curdoc

        def show(report):  # each part of the check as it arrives: the verdict first
            text = report._repr_html_()

            def push():
                self._check_report = text
                if self._layout is not None:
                    self._widgets["check_report"].object = text

            self._finish(doc, push)

        def apply(report):
            text = report._repr_html_() if hasattr(report, "_repr_html_") else (
                f"<pre>{html.escape(repr(report))}</pre>")
            self._check_report = text
            if self._layout is not None:
                self._widgets["check_report"].object = text
            ok = getattr(report, "ok", True)
            self._report("Gradient check passed." if ok else "Gradient check found problems.",
                         "success" if ok else "warning")

        self._submit("check", lambda: check(fun, self.engine.params(s), methods=[s.method],
                                            solver=s.solver, rtol=s.rtol, compare=True,
                                            on_update=show, progress=False), apply,
                     busy_text="Checking the gradient…")

    # ---------------------------------------------------------------------------------------
    # display
    # ---------------------------------------------------------------------------------------
    def __panel__(self):
        if self._layout is None:
            self._layout, self._widgets = build_layout(self)
            if self._last is None:
                self.refresh()
        return self._layout

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        # A notebook output: the layout appears once the page has connected, built from the
        # state of that moment (odelab.ui.notebook says why); in `panel serve` and inside other
        # Panel layouts `__panel__` is used as it is.
        if self._layout is None and self._last is None and running_loop() is not None:
            # The first frame of an explorer shown in a notebook is computed on a worker
            # thread: the cell ends at once, the layout appears with each view's marker, and
            # each view is drawn as soon as its own program has compiled and run (the kernel's
            # event loop applies the results). Computed here, the cell would show nothing until
            # every view was ready. Later changes follow the explorer's `background` setting;
            # a script reading results right after displaying calls `wait()` first.
            self._layout, self._widgets = build_layout(self)
            self.refresh(background=True)
        return shown_when_connected(self.__panel__())._repr_mimebundle_(include, exclude)

    def close(self, wait: bool = True) -> None:
        """Stop the worker thread (if any); queued computations are cancelled.

        wait=False returns at once (a computation already running finishes on its own), for a
        server closing the explorer of a session that ended.
        """
        self.ahead.close()
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=True)
            self._executor = None
        self._pending.clear()


def _busy(explorer: weakref.ref) -> bool:
    """Whether the explorer computes something asked for (held weakly: the ahead thread must
    not keep it alive); a collected explorer counts as busy, so nothing more starts."""
    ex = explorer()
    return ex is None or ex.busy


def _next_in(menu: list[str], current: str) -> str | None:
    """The entry after `current` in `menu` (the one before, for the last); None if alone."""
    if current not in menu or len(menu) < 2:
        return None
    k = menu.index(current)
    return menu[k + 1] if k + 1 < len(menu) else menu[k - 1]


def _next_solver(current: str, resolved: str) -> str | None:
    """The solver menu's neighbour of `current` in its group (explicit or stiff); for "auto",
    of the solver it chose (`resolved`)."""
    name = resolved if current == "auto" else current
    for group in solver_groups().values():
        if name in group:
            return _next_in(group, name)
    return None


def _track(status: dict, name: str | None, seconds: float, error: str | None,
           following: Stage | None, skipped: list[str]) -> dict:
    """`status` (the stages' markers) once stage `name` is done, `skipped` were skipped and
    `following` runs next (None: the request ends here, unless the tab in front changes)."""
    if name is not None:
        status[name] = {"state": "failed" if error else "done", "seconds": seconds}
    for other in skipped:
        status[other] = {"state": "skipped"}
    if following is None:
        status.update({k: {"state": "skipped"} for k, v in status.items()
                       if v["state"] in ("waiting", "running")})
    else:
        status[following.name] = {"state": "running", "started": time.time()}
    return status


class _Plots:
    def __init__(self, states):
        self.trajectory = TrajectoryPlot(states)
        self.phase = PhasePlot()
        self.gradient = GradientPlot()
        self.field = FieldPlot()
        self.spectrum = SpectrumPlot()
        self.training = TrainingPlot(states)
