"""The explorer's progressive frame: each view is shown as soon as its own program has run.

The order is observed through instrumentation (the engine's computations and the plots' `show`
methods record what happens, in order), never through times: the trajectory is drawn before the
gradient is computed, the views follow in the order the tab in front needs them, a slow
gradient never holds back the trajectory, and a newer request still drops stale results.
"""

import threading
import time

import numpy as np
import pytest

import odelab as ol
from odelab.ui import Explorer, Objective
from odelab.ui.compute import Engine

N_SAVE = 41


@pytest.fixture(scope="module")
def engine():
    # one engine for every explorer here: its programs compile once for the whole module
    return Engine(Objective(ol.gallery.lotka_volterra()))


def make(engine, **kw):
    return Explorer(engine.objective, engine=engine, n_save=N_SAVE, solver="tsit5", **kw)


def instrument(ex, monkeypatch, block: threading.Event | None = None) -> list[str]:
    """Record, in order, each computation's start and each plot update of `ex`.

    With `block`, the gradient by the explorer's method waits for that event before computing.
    """
    events: list[str] = []
    engine = ex.engine

    def record(name, fn, before=None):
        def wrapped(*args, **kwargs):
            label = name(*args, **kwargs) if callable(name) else name
            if label:
                events.append(label)
            if before is not None:
                before(*args, **kwargs)
            return fn(*args, **kwargs)
        return wrapped

    def gradient_name(s, method=None, **_):  # the reference's own gradients are not recorded
        return "compute gradient" if method is None else None

    def wait_for_release(s, method=None, **_):
        if block is not None and method is None:
            assert block.wait(60)

    monkeypatch.setattr(engine, "trajectory", record("compute trajectory", engine.trajectory))
    monkeypatch.setattr(engine, "phase", record("compute phase", engine.phase))
    monkeypatch.setattr(engine, "reference_gradient",
                        record("compute reference", engine.reference_gradient))
    monkeypatch.setattr(engine, "gradient", record(gradient_name, engine.gradient,
                                                   wait_for_release))
    for plot in ("trajectory", "phase", "gradient"):
        target = getattr(ex.plots, plot)
        monkeypatch.setattr(target, "show", record(f"show {plot}", target.show))
    return events


def before(events, first, second):
    assert first in events and second in events, events
    return events.index(first) < events.index(second)


def test_the_trajectory_is_drawn_before_the_gradient_is_computed(engine, monkeypatch):
    ex = make(engine)
    events = instrument(ex, monkeypatch)
    ex.refresh()
    assert events == ["compute trajectory", "show trajectory", "compute phase", "show phase",
                      "compute gradient", "show gradient"]
    assert ex.status_level == "success", ex.status
    states = {k: v["state"] for k, v in ex.stage_status.items()}
    assert states == {"trajectory": "done", "phase": "done", "gradient": "done",
                      "reference": "skipped"}  # the reference is for the Gradient tab only
    assert all(ex.stage_status[k]["seconds"] >= 0 for k in ("trajectory", "phase", "gradient"))
    assert not ex.busy
    sol = ol.solve(ol.gallery.lotka_volterra(), saveat=N_SAVE, solver="tsit5")
    np.testing.assert_allclose(ex.plots.trajectory.source.data["y"], np.asarray(sol.ys)[:, 1],
                               rtol=1e-12)
    assert np.all(np.isfinite(ex.plots.gradient.source.data["method"]))
    # a slider move that compiles nothing, computed here and now: the markers change once, at
    # the end (a page update per view would cost more than the move's computation)
    changes = []
    ex.param.watch(lambda e: changes.append(dict(e.new)), ["stage_status"])
    ex.set_value("alpha", 1.2)
    assert len(changes) == 1 and not ex.busy
    assert {k: v["state"] for k, v in changes[0].items()} == states
    assert events[-4:] == ["compute phase", "show phase", "compute gradient", "show gradient"]


def test_with_the_gradient_tab_in_front_the_gradient_comes_before_the_phase_plane(
        engine, monkeypatch):
    ex = make(engine, view="Gradient")
    events = instrument(ex, monkeypatch)
    ex.refresh()
    assert events == ["compute trajectory", "show trajectory", "compute gradient",
                      "show gradient", "compute reference", "show gradient", "compute phase",
                      "show phase"]
    assert np.all(np.isfinite(ex.plots.gradient.source.data["reference"]))
    assert ex.stage_status["reference"]["state"] == "done"


def test_without_the_gradient_nothing_waits_for_it(engine, monkeypatch):
    ex = make(engine, compute_gradient=False)
    events = instrument(ex, monkeypatch)
    ex.refresh()
    assert events == ["compute trajectory", "show trajectory", "compute phase", "show phase"]
    assert ex.stage_status["gradient"]["state"] == "skipped"
    assert not ex.busy and ex.status_level == "success"


def wait_until(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_slow_gradient_never_holds_back_the_trajectory(engine, monkeypatch):
    release = threading.Event()
    ex = make(engine, background=True)
    events = instrument(ex, monkeypatch, block=release)
    try:
        ex.refresh()
        # the gradient is still computing (blocked), and the trajectory is already drawn
        wait_until(lambda: "compute gradient" in events)
        assert before(events, "show trajectory", "compute gradient")
        assert "show gradient" not in events
        assert len(ex.plots.trajectory.source.data["t"]) == N_SAVE
        assert ex.busy and ex.stage_status["gradient"]["state"] == "running"
        assert ex.stage_status["trajectory"]["state"] == "done"
        release.set()
        ex.wait()
    finally:
        release.set()
        ex.close()
    assert events[-1] == "show gradient"
    assert not ex.busy and ex.status_level == "success", ex.status


def test_a_newer_request_drops_the_rest_of_a_stale_one(engine, monkeypatch):
    release = threading.Event()
    ex = make(engine, background=True)
    events = instrument(ex, monkeypatch, block=release)
    try:
        ex.set_value("alpha", 1.1)
        wait_until(lambda: "compute gradient" in events)  # request 1 is in its gradient
        ex.set_value("alpha", 2.0)  # request 2
        release.set()
        ex.wait()
    finally:
        release.set()
        ex.close()
    # request 1's gradient is dropped; request 2 runs every stage
    assert events.count("compute trajectory") == 2 and events.count("show gradient") == 1
    assert ex.dropped >= 1
    s = ex.settings()
    expected = ex.engine.gradient(s).value.gradient
    np.testing.assert_allclose(ex.plots.gradient.source.data["method"], expected, rtol=1e-12)
    assert dict(s.values)["alpha"] == 2.0


def test_the_gradient_tab_brought_to_front_mid_request_gets_its_reference(engine, monkeypatch):
    release = threading.Event()
    ex = make(engine, background=True)
    events = instrument(ex, monkeypatch, block=release)
    try:
        ex.refresh()
        wait_until(lambda: "compute gradient" in events)
        ex.view = "Gradient"  # the request in flight decides on the reference after its gradient
        release.set()
        ex.wait()
    finally:
        release.set()
        ex.close()
    assert events.count("compute trajectory") == 1, str(events)  # no second request
    assert before(events, "show gradient", "compute reference")
    assert ex.stage_status["reference"]["state"] == "done"
    assert np.all(np.isfinite(ex.plots.gradient.source.data["reference"]))


def test_the_tab_brought_to_front_mid_request_decides_what_comes_next(engine, monkeypatch):
    release = threading.Event()
    ex = make(engine, background=True)
    events = instrument(ex, monkeypatch)
    solve = ex.engine.trajectory

    def slow_solve(*args, **kwargs):
        assert release.wait(60)
        return solve(*args, **kwargs)

    monkeypatch.setattr(ex.engine, "trajectory", slow_solve)
    try:
        ex.refresh()  # with the Trajectory tab in front: phase plane before gradient
        ex.view = "Gradient"  # while the trajectory is still computing
        release.set()
        ex.wait()
    finally:
        release.set()
        ex.close()
    assert events == ["compute trajectory", "show trajectory", "compute gradient",
                      "show gradient", "compute reference", "show gradient", "compute phase",
                      "show phase"]


def test_the_page_shows_each_views_own_marker(engine):
    ex = make(engine)
    ex.__panel__()
    w = ex._widgets
    text = w["stages"].object
    for label in ("trajectory", "phase plane", "gradient"):
        assert f"✓ {label}" in text, text
    assert " s</span>" in text  # with its seconds
    assert "gradient" in w["gradient_stage"].object
    assert "phase plane" in w["phase_stage"].object
    assert "gradient" not in w["phase_stage"].object


def test_in_a_kernel_each_view_is_drawn_on_the_main_thread_as_it_is_ready(engine, monkeypatch):
    # a notebook: the worker computes, the kernel's event loop (here: this thread's) draws
    import asyncio

    release = threading.Event()
    ex = make(engine, background=True)
    events = instrument(ex, monkeypatch, block=release)
    threads = []
    show = ex.plots.trajectory.show
    monkeypatch.setattr(ex.plots.trajectory, "show",
                        lambda traj: (threads.append(threading.current_thread()), show(traj)))

    async def session():
        ex.refresh()  # from the loop, as a widget's callback would
        for _ in range(12000):
            if threads:
                break
            await asyncio.sleep(0.01)
        drawn_before_gradient = "show gradient" not in events
        release.set()
        while ex.busy:
            await asyncio.sleep(0.01)
        return drawn_before_gradient

    try:
        assert asyncio.run(session())
    finally:
        release.set()
        ex.close()
    assert threads == [threading.main_thread()]
    assert before(events, "show trajectory", "show gradient") and events[-1] == "show gradient"
    assert ex.stage_status["gradient"]["state"] == "done"


def test_shown_in_a_notebook_the_first_frame_fills_in_after_the_cell_ends(engine):
    """Displayed in a notebook (a kernel's event loop runs the cell), the explorer's output is
    returned before any view is computed; the views arrive through the loop as each is ready."""
    import asyncio

    ex = make(engine)
    assert not ex.background

    async def cell_then_idle_kernel():
        ex._repr_mimebundle_()  # (its Panel output needs a page; the computation does not)
        # nothing has been drawn yet: the worker's results are applied by this loop, which the
        # cell has not yielded to
        assert ex._last is None and ex.busy
        assert ex.stage_status["trajectory"]["state"] == "running"
        for _ in range(1200):  # the kernel idles; the worker's views arrive
            await asyncio.sleep(0.05)
            if not ex.busy:
                break

    asyncio.run(cell_then_idle_kernel())
    assert not ex.busy and ex.status_level == "success", ex.status
    sol = ol.solve(ol.gallery.lotka_volterra(), saveat=N_SAVE, solver="tsit5")
    np.testing.assert_allclose(ex.plots.trajectory.source.data["y"], np.asarray(sol.ys)[:, 1],
                               rtol=1e-12)
    assert np.all(np.isfinite(ex.plots.gradient.source.data["method"]))
    ex.close()
