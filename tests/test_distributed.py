"""More than one process: 2 local processes joined by `jax.distributed` (CPU collectives over
Gloo) run solve_ensemble, gradient_field and a Hutchinson trace; they must agree with one process,
which must agree with the closed forms. Every subprocess has a timeout and is killed on failure."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import odelab as ol
from odelab.distributed import T_END, check_results, free_port, launch, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 600  # seconds for a whole two-process run; CI never waits longer


def _env() -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run_two(command: list[str], log_path) -> subprocess.Popen:
    """`python -m odelab.distributed launch -n 2 -- command`, killed whole if it overruns."""
    launcher = [sys.executable, "-m", "odelab.distributed", "launch", "-n", "2", "--timeout",
                str(TIMEOUT - 30), "--", *command]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(launcher, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return proc


def _kill(proc) -> None:
    if proc.poll() is None:  # the launcher and its processes share one process group
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _finish(proc, log_path) -> str:
    try:
        proc.wait(timeout=TIMEOUT)
    finally:
        _kill(proc)
    return open(log_path).read()


@pytest.mark.slow
def test_two_processes_agree_with_one_and_with_closed_forms(tmp_path):
    out, log_path = tmp_path / "two.json", tmp_path / "two.log"
    proc = _run_two([sys.executable, "-m", "odelab.distributed", "check", "--out", str(out)],
                    log_path)
    try:
        one = check_results()  # the same computation in this one process, meanwhile
    except BaseException:
        _kill(proc)
        raise
    log = _finish(proc, log_path)
    assert proc.returncode == 0, log[-4000:]
    report = json.loads(out.read_text())
    assert report["processes"] == 2 and report["ok"]
    assert sorted(d["process"] for d in report["devices"]) == [0, 1]
    assert all(d["platform"] == "cpu" for d in report["devices"])
    assert "process 1 of 2" in log and "process 0 of 2" in log
    two = report["results"]

    # two processes against one: the same arithmetic, split differently over devices
    assert sorted(two) == sorted(one)
    for key in one:
        np.testing.assert_allclose(np.asarray(two[key]), np.asarray(one[key]), rtol=1e-12,
                                   atol=0, err_msg=key)

    # one process against the closed forms of exponential decay, y(t) = y0 exp(-k t)
    ks = np.linspace(0.2, 1.6, 6)
    np.testing.assert_allclose(one["ensemble_final"], np.exp(-ks * T_END), rtol=1e-8)
    k, y0 = np.meshgrid(np.linspace(0.2, 1.6, 4), np.linspace(0.5, 2.0, 4))
    decay = np.exp(-k * T_END)
    np.testing.assert_allclose(one["field_loss"], y0 * decay, rtol=1e-8)
    np.testing.assert_allclose(one["field_dk"], -T_END * y0 * decay, rtol=1e-8)
    np.testing.assert_allclose(one["field_dy0"], decay, rtol=1e-8)
    # Σᵢ y0ᵢ exp(-kᵢ T) has a diagonal Hessian, T² y0ᵢ exp(-kᵢ T): Hutchinson's estimate with
    # ±1 probes is then exactly its trace
    rates, starts = np.array([0.3, 0.6, 0.9, 1.2]), np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(one["trace"], np.sum(T_END**2 * starts * np.exp(-rates * T_END)),
                               rtol=1e-8)


DIFFERENT_BATCHES = textwrap.dedent("""
    import numpy as np
    import odelab as ol

    ol.distributed.initialize()
    import jax

    ks = np.linspace(0.2, 1.6, 4) + jax.process_index()  # wrong: a batch per process
    try:
        ol.solve_ensemble(ol.gallery.exponential_decay(), params_batch={"k": ks})
    except ol.InputError as err:
        print(f"refused in process {jax.process_index()}: {err}", flush=True)
    else:
        raise SystemExit("a batch that differs between processes was accepted")
""")


@pytest.mark.slow
def test_a_batch_that_differs_between_processes_is_refused_in_each(tmp_path):
    script = tmp_path / "different.py"
    script.write_text(DIFFERENT_BATCHES)
    log_path = tmp_path / "different.log"
    proc = _run_two([sys.executable, str(script)], log_path)
    log = _finish(proc, log_path)
    assert proc.returncode == 0, log[-4000:]
    for i in (0, 1):
        assert f"refused in process {i}: The inputs of this ensemble differ between processes" \
            in log, log[-4000:]


def test_launch_stops_the_others_when_one_fails_and_after_its_timeout(tmp_path):
    script = tmp_path / "one_fails.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        if os.environ["ODELAB_PROCESS_ID"] == "1":
            sys.exit(3)
        time.sleep(120)  # as a process waiting for a dead peer would
    """))
    assert launch([sys.executable, str(script)], processes=2, timeout=60) == 3
    sleeper = tmp_path / "sleeps.py"
    sleeper.write_text("import time\ntime.sleep(120)\n")
    assert launch([sys.executable, str(sleeper)], processes=2, timeout=1.0) == 124
    assert launch([sys.executable, "-c", "pass"], processes=3, timeout=60) == 0


def test_initialize_refuses_bad_settings(monkeypatch, capsys):
    for name in ("ODELAB_COORDINATOR", "ODELAB_NUM_PROCESSES", "ODELAB_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    ol.distributed.initialize()  # nothing given: one process, left as it is
    ol.distributed.initialize("127.0.0.1:4455", 1, 0)  # one process needs no runtime
    with pytest.raises(ol.InputError, match="`process_id` is missing"):
        ol.distributed.initialize("127.0.0.1:4455", 2)
    with pytest.raises(ol.InputError, match="must be below num_processes=2"):
        ol.distributed.initialize("127.0.0.1:4455", 2, 2)
    with pytest.raises(ol.InputError, match="host:port"):
        ol.distributed.initialize("localhost", 2, 0)
    with pytest.raises(ol.InputError, match="whole number"):
        ol.distributed.initialize("127.0.0.1:4455", 2.5, 0)
    monkeypatch.setenv("ODELAB_NUM_PROCESSES", "two")
    with pytest.raises(ol.InputError, match="num_processes='two'"):
        ol.distributed.initialize("127.0.0.1:4455", process_id=0)
    with pytest.raises(ol.InputError, match="command"):
        launch([], processes=2)
    with pytest.raises(ol.InputError, match="Cannot run 'no-such-program-here'"):
        launch(["no-such-program-here"], processes=2)
    # the command line says the same in one line, with exit status 2
    assert main(["launch", "-n", "0", "--", sys.executable, "-c", "pass"]) == 2
    assert "`processes=0` must be at least 1" in capsys.readouterr().err
    assert main(["check", "--num-processes", "2", "--process-id", "0"]) == 2
    assert "`coordinator_address` is missing" in capsys.readouterr().err
    jax.devices()  # JAX has run in this process: too late to join others
    with pytest.raises(ol.OdelabError, match="before anything runs JAX"):
        ol.distributed.initialize(f"127.0.0.1:{free_port()}", 2, 0)
