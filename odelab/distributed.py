"""More than one process: JAX's multi-process runtime for odelab's batched functions.

`ol.solve_ensemble`, `ol.gradient_field` and the probes of `ol.hessian_spectrum(density=True)`
(Hutchinson's trace and the eigenvalue density) split every chunk over `jax.devices()`. Once
`initialize` has joined the processes, those are the devices of every process: each process
computes its share and receives the whole result. Every process runs the same script and calls
the same functions with the same arguments (odelab refuses a batch that differs).

Run a script in 2 processes on this machine (each CPU process is one device):

    python -m odelab.distributed launch -n 2 -- python my_script.py

where my_script.py calls `ol.distributed.initialize()` before anything else runs JAX. The
launcher picks a free port, tells each process its number through the environment and stops the
others when one fails. To start the processes yourself, on one machine or on several (the
address is process 0's host), give each the same address and its own number:

    ODELAB_COORDINATOR=10.0.0.1:4455 ODELAB_NUM_PROCESSES=2 ODELAB_PROCESS_ID=0 python my_script.py
    ODELAB_COORDINATOR=10.0.0.1:4455 ODELAB_NUM_PROCESSES=2 ODELAB_PROCESS_ID=1 python my_script.py

Check a setup end to end (solve_ensemble, gradient_field and a Hutchinson trace on problems with
closed forms, and the devices they ran on):

    python -m odelab.distributed launch -n 2 -- python -m odelab.distributed check

On GPUs the same commands run unchanged (``pip install ".[gpu]"``): run one process per
machine (it uses every local GPU) or one per GPU (``CUDA_VISIBLE_DEVICES``). Without an address
or environment, `initialize` leaves a single process as it is, so the script also runs alone.
On a cluster scheduler (SLURM, Open MPI) call ``jax.distributed.initialize()`` yourself: JAX
reads the scheduler's environment.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import InputError, OdelabError
from .analysis.fields import gradient_field, solve_ensemble
from .analysis.spectra import hessian_spectrum
from .gallery import exponential_decay
from .solve import solve
from .system import System

__all__ = ["initialize", "launch", "free_port", "devices", "check_results",
           "closed_form_errors", "main"]

COORDINATOR = "ODELAB_COORDINATOR"
NUM_PROCESSES = "ODELAB_NUM_PROCESSES"
PROCESS_ID = "ODELAB_PROCESS_ID"
USAGE = """python -m odelab.distributed launch -n N [--timeout S] -- COMMAND ...
    run COMMAND in N processes on this machine, joined through a free local port
python -m odelab.distributed check [--coordinator HOST:PORT --num-processes N --process-id I]
                                   [--out FILE]
    solve_ensemble, gradient_field and a Hutchinson trace across the processes, against their
    closed forms; exit status 1 if any is off"""


# --------------------------------------------------------------------------------------------
# joining the processes
# --------------------------------------------------------------------------------------------
def _whole(argument: str, value: Any, lowest: int) -> int:
    """A whole number from an argument or an environment variable (a string of digits)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"`{argument}={value!r}` must be a whole number.")
    if value < lowest:
        raise InputError(f"`{argument}={value}` must be at least {lowest}.")
    return int(value)


def _address(value: Any) -> str:
    host, _, port = str(value).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(
            f"`coordinator_address={value!r}` must be host:port, e.g. '127.0.0.1:4455' (process "
            "0's host and a free port on it)."
        )
    return f"{host}:{int(port)}"


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, timeout: float = 300.0) -> None:
    """Join this process to the others (JAX's multi-process runtime) before anything runs JAX.

    coordinator_address: "host:port" of process 0 (every process gives the same one);
    num_processes: how many processes; process_id: this one's number, 0 … num_processes-1.
    Each argument left out is read from ODELAB_COORDINATOR, ODELAB_NUM_PROCESSES and
    ODELAB_PROCESS_ID (which `python -m odelab.distributed launch` sets). With none given and
    none in the environment, or one process, nothing happens: the script runs alone.
    timeout: seconds to wait for the other processes.

        >>> import odelab as ol
        >>> ol.distributed.initialize()      # first thing in the script
        >>> sols = ol.solve_ensemble(...)     # now split over every process's devices
    """
    given = {
        "coordinator_address": coordinator_address if coordinator_address is not None
        else os.environ.get(COORDINATOR),
        "num_processes": num_processes if num_processes is not None
        else os.environ.get(NUM_PROCESSES),
        "process_id": process_id if process_id is not None else os.environ.get(PROCESS_ID),
    }
    if all(v is None for v in given.values()):
        return
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise InputError(
            f"`{missing[0]}` is missing: give coordinator_address, num_processes and process_id "
            f"together (or {COORDINATOR}, {NUM_PROCESSES} and {PROCESS_ID} in the environment)."
        )
    address = _address(given["coordinator_address"])
    count = _whole("num_processes", given["num_processes"], 1)
    index = _whole("process_id", given["process_id"], 0)
    if index >= count:
        raise InputError(
            f"`process_id={index}` must be below num_processes={count} (processes are numbered "
            f"0 … {count - 1})."
        )
    if count == 1:
        return
    if jax.distributed.is_initialized():
        raise InputError("This process has joined the others already; call `initialize` once.")
    if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") is None:
        # CPU devices exchange data between processes through Gloo (JAX's default here)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=address, num_processes=count,
                                   process_id=index, initialization_timeout=int(timeout))
    except RuntimeError as err:
        if "before any JAX" in str(err):
            raise OdelabError(
                "`ol.distributed.initialize()` must run before anything runs JAX in this "
                "process (importing odelab does not; a solve, a jnp array or jax.devices() "
                "does). Call it at the top of the script."
            ) from err
        raise OdelabError(
            f"Process {index} of {count} could not join the others at {address}: {err}"
        ) from err


# --------------------------------------------------------------------------------------------
# launching processes on this machine
# --------------------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(command: Sequence[str], processes: int = 2, *, timeout: float | None = None,
           env: dict[str, str] | None = None) -> int:
    """Run `command` in `processes` processes on this machine, joined through a free port.

    Each process sees ODELAB_COORDINATOR, ODELAB_NUM_PROCESSES and ODELAB_PROCESS_ID, which
    `initialize()` reads. Output goes to this process's stdout/stderr. When a process fails, the
    others are stopped (they would wait for it forever); after `timeout` seconds all are.
    Returns 0 when every process succeeded, else the first failure's exit status (124 on timeout).

        >>> ol.distributed.launch(["python", "my_script.py"], processes=2)
    """
    command = [str(c) for c in command]
    if not command:
        raise InputError("`command` is empty: give the program to run, e.g. ['python', 'x.py'].")
    count = _whole("processes", processes, 1)
    base = dict(os.environ if env is None else env)
    base.update({COORDINATOR: f"127.0.0.1:{free_port()}", NUM_PROCESSES: str(count)})
    started = time.monotonic()
    procs: list[subprocess.Popen] = []
    try:
        for i in range(count):
            try:
                procs.append(subprocess.Popen(command, env={**base, PROCESS_ID: str(i)}))
            except OSError as err:
                raise InputError(
                    f"Cannot run {command[0]!r}: {err.strerror}. Give the program with its path "
                    "if it is not on PATH, e.g. ['/usr/bin/python3', 'my_script.py']."
                ) from None
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, code = failed[0]
                print(f"[odelab.distributed] process {i} exited with status {code}; stopping "
                      "the others", file=sys.stderr, flush=True)
                return code
            if all(c == 0 for c in codes):
                return 0
            if timeout is not None and time.monotonic() - started > timeout:
                print(f"[odelab.distributed] still running after {timeout:g} s; stopping all "
                      "processes", file=sys.stderr, flush=True)
                return 124
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


# --------------------------------------------------------------------------------------------
# checking a setup: the batched functions on problems with closed forms
# --------------------------------------------------------------------------------------------
T_END = 1.5
# An explicit solver and forward-mode derivatives: the quickest programs to compile for these
# small problems (what is checked is how the batches travel between processes).
SETTINGS = dict(solver="Tsit5", rtol=1e-10, atol=1e-12)


def _decay_vector(t: Any, y: Any, p: Any) -> Any:
    return -p["k"] * y


def check_results() -> dict[str, Any]:
    """solve_ensemble, gradient_field and a Hutchinson trace on exponential decay.

    Every process gets the same dict (plain lists and floats): the ensemble's final states for
    rates ks, a 4×4 field of y(T) = y0·exp(-k T) and its gradient, and Hutchinson's trace of the
    Hessian of Σᵢ yᵢ(T) over four rates (a diagonal Hessian, so the estimate is exact).
    """
    decay = exponential_decay()
    ks = np.linspace(0.2, 1.6, 6)
    # per-member: one process's single device would otherwise share steps across the batch,
    # while several devices split it per member; the same layout gives the same arithmetic
    sols = solve_ensemble(decay, params_batch={"k": ks}, t_span=(0.0, T_END), saveat=[T_END],
                          layout="per-member", **SETTINGS)

    def final(p):
        sol = solve(decay, y0=jnp.reshape(p["y0"], (1,)), params={"k": p["k"]},
                    t_span=(0.0, T_END), saveat=[T_END], **SETTINGS)
        return sol.ys[-1, 0]

    field = gradient_field(final, {"k": 0.5, "y0": 1.0}, x=("k", 0.2, 1.6), y=("y0", 0.5, 2.0),
                           n=4, log=False, method="forward")
    four = System(_decay_vector, states=("a", "b", "c", "d"),
                  params={"k": np.array([0.3, 0.6, 0.9, 1.2])}, y0=[1.0, 2.0, 3.0, 4.0],
                  t_span=(0.0, T_END), name="four_decays")

    def total(p):
        return jnp.sum(solve(four, params=p, saveat=[T_END], **SETTINGS).ys[-1])

    # one Lanczos step per probe is all Hutchinson's estimate needs
    spectrum = hessian_spectrum(total, four.params, method="forward", density=True, probes=4,
                                density_steps=1)
    return {
        "ks": ks.tolist(),
        "ensemble_final": np.asarray(sols.ys[:, -1, 0]).tolist(),
        "field_k": field.x.tolist(), "field_y0": field.y.tolist(),
        "field_loss": field.loss.tolist(), "field_dk": field.dloss_dx.tolist(),
        "field_dy0": field.dloss_dy.tolist(),
        "four_k": np.asarray(four.params["k"]).tolist(), "four_y0": np.asarray(four.y0).tolist(),
        "trace": spectrum.trace,
    }


def closed_form_errors(results: dict[str, Any]) -> dict[str, float]:
    """Largest relative error of each result in `check_results` against its closed form."""
    ks, t = np.asarray(results["ks"]), T_END
    K, Y0 = np.meshgrid(results["field_k"], results["field_y0"])
    k4, y4 = np.asarray(results["four_k"]), np.asarray(results["four_y0"])

    def rel(got, want):
        got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
        return float(np.max(np.abs(got - want) / np.abs(want)))

    return {
        "solve_ensemble": rel(results["ensemble_final"], np.exp(-ks * t)),
        "gradient_field": max(rel(results["field_loss"], Y0 * np.exp(-K * t)),
                              rel(results["field_dk"], -t * Y0 * np.exp(-K * t)),
                              rel(results["field_dy0"], np.exp(-K * t))),
        "hutchinson_trace": rel(results["trace"], np.sum(t**2 * y4 * np.exp(-k4 * t))),
    }


def devices() -> list[dict[str, Any]]:
    """Every device JAX sees (all processes): id, process, platform and kind."""
    return [{"id": d.id, "process": d.process_index, "platform": d.platform,
             "kind": d.device_kind} for d in jax.devices()]


def _check(args: argparse.Namespace) -> int:
    initialize(args.coordinator, args.num_processes, args.process_id)
    index, count = jax.process_index(), jax.process_count()
    results = check_results()
    errors = closed_form_errors(results)
    ok = all(e < args.tolerance for e in errors.values())
    seen = ", ".join(f"{d['platform']}:{d['id']} ({d['kind']}, process {d['process']})"
                     for d in devices())
    print(f"process {index} of {count}; devices: {seen}", flush=True)
    for name, err in errors.items():
        print(f"process {index}: {name} relative error {err:.2e} "
              f"{'ok' if err < args.tolerance else 'TOO LARGE'}", flush=True)
    if args.out and index == 0:
        report = {"processes": count, "devices": devices(), "errors": errors, "ok": ok,
                  "results": results}
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m odelab.distributed launch ...` or `... check ...`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "launch":
        parser = argparse.ArgumentParser(prog="python -m odelab.distributed launch")
        parser.add_argument("-n", "--processes", type=int, default=2)
        parser.add_argument("--timeout", type=float, default=None,
                            help="stop every process after this many seconds")
        parser.add_argument("command", nargs=argparse.REMAINDER)
        args = parser.parse_args(rest)
        program = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not program:
            parser.error("give the command to run after --, e.g. -- python my_script.py")
        try:
            return launch(program, args.processes, timeout=args.timeout)
        except InputError as err:
            print(f"python -m odelab.distributed launch: {err}", file=sys.stderr)
            return 2
    if command == "check":
        parser = argparse.ArgumentParser(prog="python -m odelab.distributed check")
        parser.add_argument("--coordinator", default=None, help="host:port of process 0")
        parser.add_argument("--num-processes", type=int, default=None)
        parser.add_argument("--process-id", type=int, default=None)
        parser.add_argument("--out", default=None, help="process 0 writes a JSON report here")
        parser.add_argument("--tolerance", type=float, default=1e-7,
                            help="largest relative error accepted against the closed forms")
        try:
            return _check(parser.parse_args(rest))
        except InputError as err:  # the settings: the check itself raises nothing of the kind
            print(f"python -m odelab.distributed check: {err}", file=sys.stderr)
            return 2
    print(f"unknown command {command!r}.\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
