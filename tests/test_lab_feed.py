"""The sidebar is fed by the library's events: systems, runs (ODE and delay solves alike),
objectives with their verdict, fits with their progress, and the compiling status."""

import json
import re

import jax.numpy as jnp
import numpy as np
import pytest

import odelab as ol
from odelab import _events
from odelab.lab import bridge as _lab
from odelab.lab import registry as _registry
from odelab.lab.feed import MAX_RUNS, connect


@pytest.fixture
def registry():
    registry = _registry.Registry()
    feed = connect(registry)
    yield registry
    feed.close()


def _items(registry, kind):
    return [i for i in registry.items() if i["kind"] == kind]


def _decay():
    return ol.System(lambda t, y, p: -p["k"] * y, states=("x",), params={"k": 0.7}, y0=[2.0],
                     t_span=(0.0, 1.0), name="decay")


def _delayed():
    return ol.DelaySystem(lambda t, y, yd, p: -p["a"] * yd[0], delays="tau", history=1.0,
                          states=("x",), params={"a": 1.0, "tau": 0.5}, t_span=(0.0, 2.0),
                          name="delayed decay")


def test_systems_are_listed_as_they_are_defined_and_delay_systems_once(registry):
    decay, delayed = _decay(), _delayed()
    systems = _items(registry, "system")
    assert [s["name"] for s in systems] == ["decay", "delayed decay"]  # not the delay's ODE view
    assert systems[0]["params"] == {"k": 0.7}
    assert systems[1]["system_kind"] == "delay"
    del decay, delayed


def test_ode_and_delay_solves_appear_as_runs_with_compiling_status(registry):
    seen = []
    unsubscribe = _events.subscribe(_events.COMPILING, lambda active, **_: seen.append(active))
    try:
        decay, delayed = _decay(), _delayed()
        sol = ol.solve(decay, saveat=7, solver="tsit5", rtol=1e-7)
        dsol = ol.solve(delayed, saveat=9, solver="tsit5", rtol=1e-7)
        ol.solve(decay, saveat=7, solver="tsit5", rtol=1e-7)  # the same program again
    finally:
        unsubscribe()
    # compiling was announced around each new program (ODE and delay), not for the repeat
    assert seen == [True, False, True, False]
    runs = _items(registry, "run")
    assert [r["system"] for r in runs] == ["decay", "delayed decay", "decay"]
    first, delay_run = runs[0], runs[1]
    assert first["steps"] == int(sol.num_steps) and first["ok"] is True
    assert first["solver"] == "tsit5" and first["compiled"] is True
    assert delay_run["steps"] == int(dsol.num_steps) and delay_run["ok"] is True
    assert runs[2]["compiled"] is False and runs[2]["seconds"] < first["seconds"]
    # decay: x(1) = 2 e^{-0.7}; the run is the real solve
    assert float(sol.ys[-1, 0]) == pytest.approx(2 * np.exp(-0.7), rel=1e-6)
    # the systems carry the last solver and timing
    system = next(i for i in registry.items() if i["kind"] == "system" and i["name"] == "decay")
    assert system["last_solver"] == "tsit5" and "run_time_s" in system
    del decay, delayed


def test_recent_runs_are_bounded(registry):
    decay = _decay()
    for _ in range(MAX_RUNS + 5):
        ol.solve(decay, saveat=7, solver="tsit5")
    assert len(_items(registry, "run")) == MAX_RUNS
    del decay


def test_failed_solve_run_says_why(registry):
    decay = _decay()
    sol = ol.solve(decay, saveat=7, solver="tsit5", max_steps=2, throw=False)
    (run,) = _items(registry, "run")
    assert run["ok"] is False and run["status"] == sol.message and "max_steps" in run["status"]
    del decay


@pytest.mark.slow
def test_checked_objective_shows_its_verdict_and_the_palette_checks_it_again(registry):
    decay = _decay()

    def loss(p):
        return ol.solve(decay, params=p, saveat=5).ys[-1, 0] ** 2

    report = ol.check_gradient(loss, {"k": 0.7}, methods=["checkpoint"], rtols=(1e-6,),
                               diagnose=False)
    (objective,) = _items(registry, "objective")
    assert objective["name"] == "loss" and objective["source"] == "check"
    assert objective["verdict"] == report.overall
    assert objective["methods"] == [f"checkpoint: {report.rows[0].verdict}"]
    assert objective["headline"] == report.headline
    assert objective["headline"].startswith("checkpoint is ACCURATE")
    # d/dk (2 e^{-k})^2 = -8 e^{-2k}: the report's reference is right
    assert report.reference[0] == pytest.approx(-8 * np.exp(-1.4), rel=1e-6)

    rendered = []
    bridge = _lab.LabBridge(registry, render=lambda obj, panel: rendered.append(obj) or [
        {"output_type": "display_data", "data": {"text/plain": "report"}, "metadata": {}}],
        schedule=lambda delay, callback: None)

    class Comm:
        sent = []

        def send(self, data):
            self.sent.append(json.loads(json.dumps(data)))

        on_msg = on_close = close = lambda self, *a: None

    comm = Comm()
    bridge.attach(comm)
    bridge.handle(comm, {"type": "check_gradient", "id": objective["id"], "seq": 1})
    bridge.close()
    reply = comm.sent[-1]
    assert reply["type"] == "display" and reply["action"] == "check_gradient"
    assert isinstance(rendered[-1], ol.GradientReport)
    assert rendered[-1].reference[0] == pytest.approx(-8 * np.exp(-1.4), rel=1e-6)
    # checking again repeats the user's check (same methods and tolerances), not the default one
    assert [r.label for r in rendered[-1].rows] == ["checkpoint"]
    assert rendered[-1].rtols == (1e-6,)


@pytest.mark.slow
def test_fit_shows_live_progress_loss_and_best(registry):
    decay = _decay()
    progress = []

    def loss(p):
        return (ol.solve(decay, params=p, saveat=5).ys[-1, 0] - 1.0) ** 2

    def watch(event):
        (fit,) = _items(registry, "fit")
        progress.append(fit["steps"])

    compiling = []
    with _events.listening(_events.COMPILING, lambda active, **_: compiling.append(active)):
        result = ol.fit(loss, {"k": 0.2}, steps=4, progress=False, callback=watch)
    assert compiling == [True, False]  # around the first step, which compiles the training step
    (fit,) = _items(registry, "fit")
    assert progress == [1, 2, 3, 4]  # the sidebar item moved with every step
    assert fit["progress"] == 1.0 and fit["done"] is True  # the fraction done
    assert (fit["steps"], fit["target_steps"]) == (4, 4)
    assert fit["loss"] == pytest.approx(result.losses[-1])
    assert fit["best"] == pytest.approx(min(result.losses))
    (objective,) = _items(registry, "objective")
    assert objective["source"] == "fit" and objective["sources"] == ["fit"]
    assert fit["objective_id"] == objective["id"]  # the fit's check button checks this loss
    assert jnp.isfinite(result.best_loss)


def test_compiling_events_drive_the_status_bar(monkeypatch):
    registry = _registry.Registry()
    bridge = _lab.LabBridge(registry, schedule=lambda delay, callback: callback(), interval=0.0)
    monkeypatch.setattr(_lab, "_bridge", bridge)
    sent = []

    class Comm:
        def send(self, data):
            sent.append(data)

        on_msg = on_close = close = lambda self, *a: None

    bridge.attach(Comm())
    unsubscribe = _events.subscribe(_events.COMPILING, _lab._on_compiling)
    try:
        _events.emit(_events.COMPILING, active=True, what="test")
        assert sent[-1]["type"] == "status" and sent[-1]["status"]["compiling"] is True
        _events.emit(_events.COMPILING, active=False, what="")
        assert sent[-1]["status"]["compiling"] is False
    finally:
        unsubscribe()
        bridge.close()


class _FakeSolution:
    num_steps, ok, message = 17, True, "ok"


class _FakeFit:
    def __init__(self, steps, target, losses, interrupted=False, stop_reason=""):
        self.steps, self.target_steps, self.losses = steps, target, losses
        self.best_loss = min(losses) if losses else float("inf")
        self.best_step = losses.index(self.best_loss) if losses else -1
        self.interrupted, self.stop_reason = interrupted, stop_reason


class _FakeRow:
    label, verdict = "checkpoint", "accurate"


class _FakeReport:
    overall, ok, rows = "accurate", True, [_FakeRow()]

    def __str__(self):
        return "Gradient check of loss (1 parameters): ACCURATE\nmore"


def _every_kind(registry):
    """One item of each kind, fed through the library's events (no solve, no compile)."""
    decay = _decay()

    def loss(p):
        return p["k"] ** 2

    _events.emit(_events.SOLVE, system=decay, y0=None, params=decay.params, t_span=(0.0, 1.0),
                 solver="tsit5", method="checkpoint", solution=_FakeSolution(), seconds=0.5,
                 compiled=True)
    _events.emit(_events.SOLVE, system=decay, y0=None, params=decay.params, t_span=(0.0, 1.0),
                 solver="tsit5", method="checkpoint", solution=_FakeSolution(), seconds=0.01,
                 compiled=False)
    _events.emit(_events.OBJECTIVE, fun=loss, params={"k": 0.5}, source="check",
                 options={"methods": ["checkpoint"]})
    _events.emit(_events.CHECKED, fun=loss, params={"k": 0.5}, report=_FakeReport())
    fit = _FakeFit(0, 10, [])
    _events.emit(_events.FIT, result=fit, done=False, name="fit: loss", fun=loss)
    fit.steps, fit.losses, fit.best_loss, fit.best_step = 3, [3.0, 2.0, 2.5], 2.0, 1
    _events.emit(_events.FIT, result=fit, done=False)
    return decay, loss, fit


def test_every_kind_carries_what_the_sidebar_shows(registry):
    keep = _every_kind(registry)
    (system,) = _items(registry, "system")
    run, _ = _items(registry, "run")
    (objective,) = _items(registry, "objective")
    (fit,) = _items(registry, "fit")
    assert system["last_solver"] == "tsit5" and system["compile_time_s"] == 0.5
    assert system["run_time_s"] == 0.01
    assert run["name"] == "decay (tsit5)"
    assert (run["steps"], run["seconds"], run["status"], run["ok"]) == (17, 0.5, "ok", True)
    assert objective["verdict"] == "accurate" and objective["n_params"] == 1
    assert objective["headline"] == "Gradient check of loss (1 parameters): ACCURATE"
    assert objective["methods"] == ["checkpoint: accurate"]
    assert fit["name"] == "fit: loss" and fit["progress"] == pytest.approx(0.3)
    assert (fit["steps"], fit["target_steps"], fit["loss"], fit["best"]) == (3, 10, 2.5, 2.0)
    assert fit["best_step"] == 1 and fit["done"] is False
    assert fit["objective_id"] == objective["id"]
    del keep


def test_the_extension_reads_every_field_the_kernel_sends(registry):
    """protocol.ts's checkItem reads each item field odelab/lab/feed.py fills (and no others)."""
    from pathlib import Path

    protocol = (Path(__file__).resolve().parents[1] / "extension" / "src" / "protocol.ts")
    source = protocol.read_text()
    body = source[source.index("export function checkItem"):source.index("function checkStatus")]
    read = set(re.findall(r"value\.(\w+)", body))
    keep = _every_kind(registry)
    sent = {key for item in registry.items() for key in item}
    not_shown = {"created", "held"}  # bookkeeping only
    assert sent - read - not_shown == set(), "fields the sidebar never reads"
    # n_compiles: shown when present ("compile 1.3 s (2×)"); the feed does not count them yet
    assert read - sent - {"n_compiles"} == set(), "fields the kernel never sends"
    del keep


def test_a_recheck_repeats_the_check_and_a_fit_is_checked_through_its_loss(registry, monkeypatch):
    keep = _every_kind(registry)
    _, loss, _ = keep
    calls = []
    monkeypatch.setattr(_lab, "_library_function", {
        "check_gradient": lambda fun, params, **options: calls.append((fun, params, options))
        or "report"}.get)
    bridge = _lab.LabBridge(registry, render=lambda obj, panel: [
        {"output_type": "display_data", "data": {"text/plain": str(obj)}, "metadata": {}}],
        schedule=lambda delay, callback: None)
    sent = []

    class Comm:
        def send(self, data):
            sent.append(data)

        on_msg = on_close = close = lambda self, *a: None

    comm = Comm()
    bridge.attach(comm)
    (objective,) = _items(registry, "objective")
    (fit,) = _items(registry, "fit")
    (system,) = _items(registry, "system")
    bridge.handle(comm, {"type": "check_gradient", "id": fit["id"], "seq": 1})
    assert calls == [(loss, {"k": 0.5}, {"methods": ["checkpoint"]})]
    assert sent[-1]["type"] == "display" and sent[-1]["id"] == objective["id"]
    assert sent[-1]["title"] == "Gradient check: loss"
    bridge.handle(comm, {"type": "open_explorer", "id": objective["id"], "seq": 2})
    assert sent[-1]["type"] == "error" and "the explorer opens systems" in sent[-1]["message"]
    bridge.handle(comm, {"type": "check_gradient", "id": system["id"], "seq": 3})
    assert sent[-1]["type"] == "error" and "not an objective" in sent[-1]["message"]
    bridge.close()
    del keep


def test_the_extension_accepts_every_reply_type_the_kernel_sends():
    """Each message type odelab/lab/bridge.py sends has a case in protocol.ts's checkReply."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    bridge_source = (root / "odelab" / "lab" / "bridge.py").read_text()
    sent = set(re.findall(r'"type": "(\w+)"', bridge_source))
    protocol = (root / "extension" / "src" / "protocol.ts").read_text()
    body = protocol[protocol.index("export function checkReply"):]
    accepted = set(re.findall(r"case '(\w+)'", body[:body.index("\n}\n")]))
    assert sent == {"items", "status", "capabilities", "defaults", "display", "error"}
    assert sent <= accepted, f"replies the extension would refuse: {sent - accepted}"


def test_a_second_explorer_of_the_same_system_is_one_objective(registry):
    """The sidebar's own explorer tab of a system explored in the notebook adds no duplicate."""
    system = _decay()
    first = ol.explore(system)
    second = ol.explore(system)
    (objective,) = _items(registry, "objective")
    assert objective["name"] == "decay: " + first.objective.loss_name
    other = ol.explore(ol.gallery.lotka_volterra())
    assert len(_items(registry, "objective")) == 2
    del first, second, other
