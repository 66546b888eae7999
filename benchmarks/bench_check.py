"""The interactive gradient check: how soon its first verdict arrives, measured side by side.

Each figure is measured in a fresh Python process with JAX's persistent compilation cache off,
so the check and the plain gradient both compile from scratch, alternating process by process
(medians over repeats):

- first verdict of `ol.check_gradient` / one `ol.gradient` call's first call (compile + run),
  on a forced Duffing oscillator (2 states, 5 parameters, the default check: the method in use
  and every other method compared) and on the tutorial's stiff bursting neuron (notebook 06:
  13 states, 8 conductances, 0–60 ms, checkpoint and backsolve, accuracy 1e-6) — target ≤ 2.5;
- on the neuron, the seconds until the verdicts of both methods and the recommendation are in
  (target < 60 s), and until the whole check (diagnosis, finite-difference cross-check) is;
- full run only: the default check of the neuron over 0–200 ms.

    python benchmarks/bench_check.py          # full
    python benchmarks/bench_check.py --quick  # one process pair per problem
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------------------------
# the problems (built inside the worker process)
# --------------------------------------------------------------------------------------------
def _duffing():
    import jax.numpy as jnp

    import odelab as ol

    def field(t, y, p):
        x, v = y
        return jnp.stack([v, -p["delta"] * v - p["alpha"] * x - p["beta"] * x**3
                          + p["gamma"] * jnp.cos(p["omega"] * t)])

    system = ol.System(field, states=("x", "v"), params={
        "delta": 0.3, "alpha": -1.0, "beta": 1.0, "gamma": 0.37, "omega": 1.2},
        y0=[1.0, 0.0], t_span=(0.0, 20.0), name="duffing")

    def duffing_loss(p):
        return jnp.mean(ol.solve(system, params=p, saveat=101).ys[:, 0] ** 2)

    return duffing_loss, dict(system.params), {}


def _neuron(t_end: float):
    from odelab.gallery.bursting import voltage_fit_problem

    if t_end == 60.0:  # notebook 06's case
        loss, params = voltage_fit_problem(t_end=60.0, n_save=121)
        return loss, params, dict(methods=["checkpoint", "backsolve"],
                                  rtols=(1e-4, 1e-6, 1e-8, 1e-10), accuracy=1e-6)
    loss, params = voltage_fit_problem(t_end=t_end)
    return loss, params, dict(accuracy=1e-6)


PROBLEMS = {
    "duffing": (_duffing, "forced Duffing (2 states, 5 parameters), default check"),
    "neuron60": (lambda: _neuron(60.0), "bursting neuron 0–60 ms (notebook 06: checkpoint, "
                                        "backsolve)"),
    "neuron200": (lambda: _neuron(200.0), "bursting neuron 0–200 ms, default check"),
}


def _worker(kind: str, problem: str, compare: bool) -> dict:
    """Runs in a fresh process: times one gradient's first call, or a check's parts."""
    fun, params, options = PROBLEMS[problem][0]()
    import odelab as ol

    start = time.perf_counter()
    if kind == "gradient":
        method = options.get("methods", ["auto"])[0]
        ol.gradient(fun, params, method=method)
        return {"seconds": time.perf_counter() - start}
    if not compare:
        options = dict(options, compare=False)
    report = ol.check_gradient(fun, params, progress=False, **options)
    out = dict(report.seconds)
    out["verdict"] = report.verdict
    return out


def _measure(kind: str, problem: str, compare: bool) -> dict:
    env = dict(os.environ, ODELAB_CACHE_DIR="off")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent)] + [
        p for p in [os.environ.get("PYTHONPATH")] if p])
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", kind,
                          problem, "compare" if compare else "verdict"],
                         capture_output=True, text=True, env=env, timeout=3600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rows(problem: str, repeats: int, compare: bool) -> list[dict]:
    grads, checks = [], []
    for _ in range(repeats):  # alternating, so load on the machine hits both alike
        grads.append(_measure("gradient", problem, compare)["seconds"])
        checks.append(_measure("check", problem, compare))
    g = statistics.median(grads)
    pick = lambda key: statistics.median(c[key] for c in checks if key in c)  # noqa: E731
    first = pick("first verdict")
    name = PROBLEMS[problem][1]
    rows = [{"problem": name, "what": "first verdict / one gradient's first call",
             "seconds": first, "ratio": first / g,
             "note": f"target ≤ 2.5; the gradient's first call: {g:.3g} s; "
                     f"verdict: {checks[0]['verdict']}"}]
    rows.append({"problem": name, "what": "verdicts + recommendation (s)",
                 "median_ms": 1e3 * pick("verdicts"),
                 "ratio": pick("verdicts") / g,
                 "note": "target median < 60000 ms" if problem == "neuron60" else ""})
    rows.append({"problem": name, "what": "whole check (s)" + (
        "" if compare else ", no comparison of other methods"),
        "median_ms": 1e3 * pick("total"), "ratio": pick("total") / g, "note": ""})
    return rows


def run(quick: bool = False) -> list[dict]:
    repeats = 1 if quick else 2
    rows = _rows("duffing", repeats, compare=not quick)
    rows += _rows("neuron60", repeats, compare=False)
    if not quick:
        rows += _rows("neuron200", 1, compare=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| problem | what | seconds | ratio | note |", "|---|---|---|---|---|"]
    for r in rows:
        seconds = r.get("seconds", r.get("median_ms", float("nan")) / 1e3)
        lines.append(f"| {r['problem']} | {r['what']} | {seconds:.3g} | {r['ratio']:.3g} | "
                     f"{r['note']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(_worker(sys.argv[2], sys.argv[3], sys.argv[4] == "compare")))
    else:
        print(markdown(run(quick="--quick" in sys.argv)))
