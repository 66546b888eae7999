"""Compiling ahead (odelab.ui.ahead): what a person is likely to pick next is compiled while
they look, never before what they asked for.

The queue's rules are tested with plain Python items (no JAX); the explorer's use of it by
counting XLA compilations: after the quiet spell, picking the next method or the next solver
in the menus compiles nothing.
"""

import threading
import time

import pytest

import odelab as ol
from odelab._compilations import compile_count
from odelab.ui import Explorer, Objective
from odelab.ui.ahead import CompileAhead, enabled_by_default
from odelab.ui.explorer import _next_solver

N_SAVE = 37


def recorder(log, name, event=None):
    def run():
        if event is not None:
            assert event.wait(10)
        log.append(name)
    return run


def test_items_wait_for_quiet_and_for_the_owner_to_be_idle():
    busy = threading.Event()
    busy.set()
    log: list[str] = []
    ahead = CompileAhead(busy=busy.is_set, quiet=0.05)
    ahead.plan([("a", recorder(log, "a")), ("b", recorder(log, "b"))])
    time.sleep(0.4)
    assert log == [] and ahead.pending() == ["a", "b"]  # the owner is computing
    busy.clear()
    assert ahead.wait(10)
    assert log == ["a", "b"] and ahead.done == {"a", "b"}
    deadline = time.monotonic() + 30
    while ahead._thread is not None:  # no thread outlives its queue (it would keep its owner)
        assert time.monotonic() < deadline, "the thread outlived its queue"
        time.sleep(0.01)


def test_a_request_drops_the_items_not_started_and_a_running_one_finishes():
    log: list[str] = []
    release = threading.Event()
    ahead = CompileAhead(quiet=0.0)
    ahead.plan([("slow", recorder(log, "slow", release)), ("next", recorder(log, "next"))])
    deadline = time.monotonic() + 10
    while ahead.running != "slow":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    ahead.hold()  # what the person asks for: "next" must not start
    assert ahead.pending() == ["slow"]
    release.set()
    assert ahead.wait(10)
    assert log == ["slow"] and "next" not in ahead.done


def test_done_items_are_skipped_and_failures_are_kept_quietly():
    log: list[str] = []
    ahead = CompileAhead(quiet=0.0)
    ahead.mark_done("asked")

    def broken():
        raise ValueError("this solver cannot integrate it")

    ahead.plan([("asked", recorder(log, "asked")), ("broken", broken), ("ok", recorder(log, "ok"))])
    assert ahead.wait(10)
    assert log == ["ok"]
    assert ahead.failed == {"broken": "ValueError: this solver cannot integrate it"}
    ahead.close()
    ahead.plan([("later", recorder(log, "later"))])  # a closed queue takes nothing
    assert ahead.pending() == [] and log == ["ok"]


def test_on_unless_switched_off(monkeypatch):
    monkeypatch.delenv("ODELAB_COMPILE_AHEAD", raising=False)
    assert enabled_by_default()
    monkeypatch.setenv("ODELAB_COMPILE_AHEAD", "0")
    assert not enabled_by_default()


def test_menu_neighbours():
    assert _next_solver("tsit5", "tsit5") == "dopri5"
    assert _next_solver("auto", "tsit5") == "dopri5"  # auto: the neighbour of what it chose
    assert _next_solver("dopri8", "dopri8") == "dopri5"  # the last one: the one before
    assert _next_solver("kvaerno5", "kvaerno5") == "rodas5"  # stiff stays stiff


@pytest.mark.slow
def test_the_next_method_and_solver_compile_nothing_once_compiled_ahead():
    objective = Objective(ol.gallery.lotka_volterra())
    hidden = Explorer(objective, n_save=N_SAVE, compile_ahead=True)
    hidden.refresh()
    assert hidden.ahead.pending() == []  # not displayed: nothing compiled ahead

    ex = Explorer(objective, n_save=N_SAVE, compile_ahead=True)  # solver auto, method auto
    ex.__panel__()  # displayed: the first frame is drawn, then the queue is planned
    assert ex._last is not None and ex._last.trajectory.solver == "tsit5"
    planned = set(ex.ahead.pending())
    assert planned == {("trajectory", "dopri5", N_SAVE), ("gradient", N_SAVE, "checkpoint", "auto"),
                       ("gradient", N_SAVE, "auto", "dopri5")}
    before = compile_count()
    assert ex.ahead.wait(600)
    assert compile_count() > before, "compiling ahead compiled nothing"
    assert ex.ahead.failed == {}
    ex.ahead.quiet = 3600.0  # nothing more ahead: every compilation below would be the person's

    before = compile_count()
    ex.method = "checkpoint"  # the next method: its gradient (and reference) are ready
    ex.method = "auto"
    ex.solver = "dopri5"  # the next solver: trajectory, gradient and reference are ready
    assert compile_count() == before
    assert ex._last.trajectory.solver == "dopri5" and ex._last.gradient is not None
    assert "Compiled" not in ex.status and ex.status_level == "success"
    ex.close()
