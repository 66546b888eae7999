"""The kernel side of the JupyterLab extension, without a browser or a kernel.

A fake comm stands in for the front end: it records what the kernel sends and lets a test deliver
messages as ipykernel would.
"""

import gc
import json

import numpy as np
import pytest

from odelab.lab import bridge as _lab
from odelab.lab import registry as _registry
from odelab.lab.schema import MAX_MESSAGE_BYTES, CommMessageError, validate_request


class FakeComm:
    """Records sent messages; `deliver` plays a message from the front end."""

    def __init__(self):
        self.sent = []
        self.closed = False
        self._on_msg = None
        self._on_close = None

    def send(self, data):
        if self.closed:
            raise RuntimeError("comm is closed")
        # What goes over the wire must be plain JSON.
        self.sent.append(json.loads(json.dumps(data, allow_nan=False)))

    def on_msg(self, callback):
        self._on_msg = callback

    def on_close(self, callback):
        self._on_close = callback

    def close(self):
        self.closed = True
        if self._on_close:
            self._on_close({"content": {"data": {}}})

    def deliver(self, data):
        self._on_msg({"content": {"comm_id": "x", "data": data}})

    def of_type(self, kind):
        return [message for message in self.sent if message["type"] == kind]


class ManualScheduler:
    """Collects delayed calls so a test decides when throttled pushes fire."""

    def __init__(self):
        self.calls = []

    def __call__(self, delay, callback):
        self.calls.append((delay, callback))

    def run_all(self):
        calls, self.calls = self.calls, []
        for _delay, callback in calls:
            callback()


class Thing:
    """Any weakly referenceable object the registry can track."""


@pytest.fixture
def registry():
    return _registry.Registry()


@pytest.fixture
def bridge(registry):
    rendered = []

    def render(obj, needs_panel):
        rendered.append((obj, needs_panel))
        return [{"output_type": "display_data", "data": {"text/plain": repr(obj)}, "metadata": {}}]

    scheduler = ManualScheduler()
    bridge = _lab.LabBridge(registry, render=render, schedule=scheduler, interval=60.0)
    bridge.rendered = rendered
    bridge.scheduler = scheduler
    yield bridge
    bridge.close()


# -- registry ------------------------------------------------------------------------------------


def test_track_returns_stable_ids_and_items_describe_objects(registry):
    system = Thing()
    item_id = registry.track(system, "system", "lotka-volterra", states=("x", "y"))
    assert item_id == "system-1"
    assert registry.track(system, "system") == item_id  # tracking twice keeps the id
    (item,) = registry.items()
    assert item["id"] == item_id
    assert item["kind"] == "system"
    assert item["name"] == "lotka-volterra"
    assert item["states"] == ["x", "y"]
    assert registry.get(item_id) is system


def test_update_by_object_or_id_merges_fields_as_json(registry):
    system = Thing()
    item_id = registry.track(system, "system", "decay")
    registry.update(system, last_solver="tsit5", run_time_s=np.float64(0.25))
    registry.update(item_id, last_method="checkpoint", params={"k": np.array(2.0)})
    info = registry.info(item_id)
    assert info["last_solver"] == "tsit5"
    assert info["last_method"] == "checkpoint"
    assert info["run_time_s"] == 0.25 and type(info["run_time_s"]) is float
    assert info["params"] == {"k": 2.0}
    json.dumps(registry.items(), allow_nan=False)


def test_update_of_an_untracked_object_is_ignored(registry):
    assert registry.update(Thing(), run_time_s=1.0) is None
    assert registry.items() == []


def test_unknown_kind_is_refused(registry):
    with pytest.raises(ValueError, match="kind='plot'"):
        registry.track(Thing(), "plot")


def test_entries_vanish_when_their_object_is_collected(registry):
    changes = []
    registry.subscribe(changes.append)
    system = Thing()
    item_id = registry.track(system, "system", "short-lived")
    del system
    gc.collect()
    assert registry.items() == []
    assert registry.get(item_id) is None
    assert changes == [item_id, item_id]  # tracked, then removed


def test_objects_without_weak_references_are_held_and_bounded(registry):
    ids = [registry.track({"n": n}, "run", f"run {n}") for n in range(205)]
    assert len(registry.items()) == 200
    assert registry.get(ids[-1]) == {"n": 204}
    assert registry.get(ids[0]) is None  # the oldest strong entries were dropped


def test_subscribers_are_called_and_failures_do_not_propagate(registry, caplog):
    seen = []

    def broken(_item_id):
        raise RuntimeError("listener bug")

    registry.subscribe(broken)
    registry.subscribe(seen.append)
    system = Thing()
    item_id = registry.track(system, "system")
    registry.update(system, verdict="ok")
    assert seen == [item_id, item_id]
    assert "listener bug" in caplog.text
    registry.unsubscribe(seen.append)
    registry.update(system, verdict="still ok")
    assert seen == [item_id, item_id]


def test_non_finite_and_odd_values_become_json(registry):
    thing = Thing()
    registry.track(thing, "fit", "training", loss=float("nan"), progress=0.5, note=object())
    (item,) = registry.items()
    assert item["loss"] is None
    assert item["progress"] == 0.5
    assert item["note"].startswith("<object object")


# -- schema --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message, complaint",
    [
        ({}, "needs a `type`"),
        ({"id": "system-1"}, "needs a `type`"),
        ({"type": "exec", "code": "import os"}, "is not one of"),
        ({"type": 3}, "is not one of"),
        ({"type": "open_explorer"}, "needs the keys \\['id'\\]"),
        ({"type": "open_explorer", "id": "../../etc"}, "`id` must be"),
        ({"type": "open_explorer", "id": "a" * 65}, "`id` must be"),
        ({"type": "open_explorer", "id": 12}, "`id` must be"),
        ({"type": "open_explorer", "id": "x; rm -rf /"}, "`id` must be"),
        ({"type": "list", "extra": 1}, "does not take the keys \\['extra'\\]"),
        ({"type": "open_explorer", "id": "system-1", "code": "1"}, "does not take"),
        ({"type": "list", "seq": -1}, "`seq` must be"),
        ({"type": "list", "seq": True}, "`seq` must be"),
        ({"type": "settings", "settings": {"rtol": 2.0}}, "between 0 and 1"),
        ({"type": "settings", "settings": {"rtol": "1e-3"}}, "must be a number"),
        ({"type": "settings", "settings": {"method": "magic"}}, "must be one of"),
        ({"type": "settings", "settings": {"solver": "__import__('os')"}}, "solver name"),
        ({"type": "settings", "settings": {"eval": 1}}, "unknown keys"),
        ({"type": "settings", "settings": [1]}, "must be an object"),
        (["type", "list"], "JSON object"),
        ({"type": "list", "seq": float("nan")}, "plain JSON"),
        ({"type": "list", "seq": 1, "pad": "x" * MAX_MESSAGE_BYTES}, "at most 4096 bytes"),
    ],
)
def test_malformed_messages_are_rejected(message, complaint):
    with pytest.raises(CommMessageError, match=complaint):
        validate_request(message)


def test_valid_messages_are_accepted():
    assert validate_request({"type": "hello"}).type == "hello"
    request = validate_request({"type": "open_explorer", "id": "system-1", "seq": 4})
    assert (request.type, request.id, request.seq) == ("open_explorer", "system-1", 4)
    request = validate_request(
        {
            "type": "settings",
            "settings": {"solver": "kvaerno5", "method": "backsolve", "atol": 1e-9},
        }
    )
    assert request.settings == {"solver": "kvaerno5", "method": "backsolve", "atol": 1e-9}


# -- the bridge, driven through a fake comm --------------------------------------------------------


def test_hello_replies_with_items_status_capabilities_and_defaults(bridge, registry):
    system = Thing()
    registry.track(system, "system", "lorenz", states=["x", "y", "z"])
    comm = FakeComm()
    bridge.attach(comm, {"type": "hello", "seq": 7})
    assert [m["type"] for m in comm.sent] == ["items", "status", "capabilities", "defaults"]
    # the method and solver names come from the library's registries, not from a copy
    (caps,) = comm.of_type("capabilities")
    import odelab

    assert caps["methods"]["ode"] == ["auto", *odelab.methods(kind="ode").names()]
    assert caps["methods"]["delay"] == ["auto", *odelab.methods(kind="delay").names()]
    assert "delay-adjoint" not in caps["methods"]["ode"]
    assert "backsolve" not in caps["methods"]["delay"]
    assert {s["name"] for s in caps["solvers"]} == set(odelab.solver_names())
    assert all(m["seq"] == 7 for m in comm.sent)
    (items,) = comm.of_type("items")
    assert [i["name"] for i in items["items"]] == ["lorenz"]
    (status,) = comm.of_type("status")
    import jax

    assert status["status"]["backend"] == jax.default_backend()
    assert status["status"]["device_count"] == jax.device_count()
    assert status["status"]["float64"] is True  # importing odelab enables float64
    assert status["status"]["compiling"] is False


def test_malformed_messages_get_an_error_reply_and_change_nothing(bridge, registry):
    comm = FakeComm()
    bridge.attach(comm)
    for message in (
        {"type": "exec", "code": "raise SystemExit"},
        {"type": "settings", "settings": {"rtol": -1}},
        "import os",
        None,
        {"type": "list", "seq": 3, "huge": "x" * 10_000},
    ):
        comm.deliver(message)
    assert [m["type"] for m in comm.sent] == ["error"] * 5
    assert all(m["message"].startswith("ignored a message: ") for m in comm.sent)
    assert _lab.lab_defaults() == {}
    assert registry.items() == []


def test_settings_set_lab_defaults(bridge):
    comm = FakeComm()
    bridge.attach(comm)
    try:
        comm.deliver({"type": "settings", "settings": {"solver": "dopri5", "rtol": 1e-4}})
        assert _lab.lab_defaults() == {"solver": "dopri5", "rtol": 1e-4}
        assert comm.sent[-1] == {
            "type": "defaults",
            "defaults": {"solver": "dopri5", "rtol": 1e-4},
        }
        comm.deliver({"type": "settings", "settings": {"method": "forward"}})
        assert _lab.lab_defaults() == {"method": "forward"}  # settings replace, not merge
    finally:
        comm.deliver({"type": "settings", "settings": {}})
    assert _lab.lab_defaults() == {}


def test_registry_changes_are_pushed_throttled(bridge, registry):
    comm = FakeComm()
    bridge.attach(comm)
    system = Thing()
    registry.track(system, "system", "pendulum")  # first change: pushed at once
    for step in range(50):
        registry.update(system, progress=step / 50)  # within the interval: one deferred push
    assert len(comm.of_type("items")) == 1
    assert len(bridge.scheduler.calls) == 1
    bridge.scheduler.run_all()
    pushes = comm.of_type("items")
    assert len(pushes) == 2
    assert pushes[-1]["items"][0]["progress"] == pytest.approx(49 / 50)


def test_set_compiling_pushes_status(bridge, monkeypatch):
    monkeypatch.setattr(_lab, "_bridge", bridge)
    comm = FakeComm()
    bridge.attach(comm)
    _lab.set_compiling(True)
    try:
        (status,) = comm.of_type("status")
        assert status["status"]["compiling"] is True
    finally:
        _lab.set_compiling(False)
    bridge.scheduler.run_all()
    assert comm.of_type("status")[-1]["status"]["compiling"] is False


def without_library_functions(monkeypatch):
    monkeypatch.setattr(_lab, "_library_function", lambda name: None)


def with_library_function(monkeypatch, name, function):
    monkeypatch.setattr(_lab, "_library_function", {name: function}.get)


def test_open_explorer_renders_a_view_of_the_item(bridge, registry, monkeypatch):
    without_library_functions(monkeypatch)
    system = Thing()
    item_id = registry.track(system, "system", "van der pol", states=["x", "v"])
    registry.update(system, last_solver="kvaerno5", params={"mu": 3.0})
    comm = FakeComm()
    bridge.attach(comm)
    comm.deliver({"type": "open_explorer", "id": item_id, "seq": 1})
    (reply,) = comm.sent
    assert reply["type"] == "display" and reply["id"] == item_id and reply["seq"] == 1
    assert reply["title"] == "Explorer: van der pol"
    assert reply["action"] == "open_explorer"
    assert reply["outputs"][0]["output_type"] == "display_data"
    ((view, needs_panel),) = bridge.rendered
    assert needs_panel is True
    text = view.object  # until ol.explore exists: a Markdown summary of the item
    assert "### van der pol" in text
    assert "| last solver | kvaerno5 |" in text
    assert "| parameters | mu = 3.0 |" in text


def test_open_explorer_uses_ol_explore_when_present(bridge, registry, monkeypatch):
    calls = []
    with_library_function(monkeypatch, "explore", lambda obj: calls.append(obj) or "the explorer")
    system = Thing()
    item_id = registry.track(system, "system", "lorenz")
    comm = FakeComm()
    bridge.attach(comm)
    comm.deliver({"type": "open_explorer", "id": item_id})
    assert calls == [system]
    assert bridge.rendered == [("the explorer", True)]
    assert comm.sent[0]["outputs"][0]["data"] == {"text/plain": "'the explorer'"}


def test_actions_on_unknown_ids_reply_with_an_error(bridge):
    comm = FakeComm()
    bridge.attach(comm)
    comm.deliver({"type": "open_explorer", "id": "system-999", "seq": 2})
    (reply,) = comm.sent
    assert reply == {
        "type": "error",
        "seq": 2,
        "message": "no live odelab object has the id 'system-999'; it may have been deleted.",
    }


def test_check_gradient_calls_the_library_on_objectives(bridge, registry, monkeypatch):
    class Objective:
        params = {"k": 1.0}

        @staticmethod
        def fun(p):
            return p["k"] ** 2

    calls = []
    with_library_function(
        monkeypatch, "check_gradient", lambda fun, params: calls.append((fun, params)) or "report"
    )
    objective = Objective()
    item_id = registry.track(objective, "objective", "loss")
    plain = Thing()
    system_id = registry.track(plain, "system", "plain")
    comm = FakeComm()
    bridge.attach(comm)
    comm.deliver({"type": "check_gradient", "id": item_id})
    assert calls == [(Objective.fun, {"k": 1.0})]
    assert comm.sent[-1]["type"] == "display"
    assert comm.sent[-1]["title"] == "Gradient check: loss"
    assert comm.sent[-1]["action"] == "check_gradient"
    comm.deliver({"type": "check_gradient", "id": system_id})
    assert comm.sent[-1]["type"] == "error"
    assert "not an objective" in comm.sent[-1]["message"]


def test_check_gradient_without_library_support_says_so(bridge, registry, monkeypatch):
    without_library_functions(monkeypatch)
    comm = FakeComm()
    bridge.attach(comm)
    comm.deliver({"type": "check_gradient", "id": "objective-1"})
    assert comm.sent[-1]["type"] == "error"
    assert "no check_gradient" in comm.sent[-1]["message"]


def test_failing_actions_reply_with_the_error(bridge, registry, monkeypatch):
    def explode(obj):
        raise ValueError("cannot explore this")

    with_library_function(monkeypatch, "explore", explode)
    item_id = registry.track(keep := Thing(), "system", "bad")
    comm = FakeComm()
    bridge.attach(comm)
    comm.deliver({"type": "open_explorer", "id": item_id})
    assert comm.sent[-1]["type"] == "error"
    assert "ValueError: cannot explore this" in comm.sent[-1]["message"]
    del keep


def test_closed_comms_are_dropped_and_old_ones_closed(bridge, registry):
    first = FakeComm()
    bridge.attach(first)
    first.close()
    assert bridge.comms == []
    comms = [FakeComm() for _ in range(10)]
    for comm in comms:
        bridge.attach(comm)
    assert bridge.comms == comms[-8:]
    assert comms[0].closed and comms[1].closed and not comms[2].closed
    registry.track(keep := Thing(), "system")  # pushes go only to open comms
    assert all(len(c.of_type("items")) == 1 for c in comms[-8:])
    del keep


def test_library_functions_are_found_lazily_or_reported_missing():
    import odelab

    assert _lab._library_function("solve") is odelab.solve
    assert _lab._library_function("no_such_function") is None


def test_activate_outside_a_kernel_does_nothing(monkeypatch):
    monkeypatch.setattr(_lab, "_bridge", None)
    assert _lab.activate() is None


def test_summary_pane_escapes_names():
    text = _lab._summary_markdown({"name": "<script>x</script>", "kind": "system"})
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
