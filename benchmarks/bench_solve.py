"""odelab's overhead over diffrax called directly, and cold vs warm first-solve time.

Both sides solve the same problem with the same solver, tolerances and save points; each side
is jitted once and then timed over repeats (median), alternating so that machine load hits
both alike. Rows:
- inside jax.jit (how training loops and objectives run): `ol.solve` / `ol.gradient` called in
  the user's jitted function against the same diffrax call jitted: the compiled programs;
- eager calls (a notebook cell, a slider): `ol.solve` checks its arguments in Python and
  returns a Solution with status and counts on every call; diffrax is timed with t_span and
  tolerances baked into its program as constants (new values recompile), and with them as
  inputs, which is what an eager odelab call compiles so that moving a tolerance or the end
  time never recompiles.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import diffrax
import jax
import jax.numpy as jnp

import odelab as ol


def _lorenz(t, y, p):
    x, yy, z = y
    return jnp.stack([p["sigma"] * (yy - x), x * (p["rho"] - z) - yy, x * yy - p["beta"] * z])


PARAMS = dict(sigma=10.0, rho=28.0, beta=8.0 / 3.0)


def _alternate(fns: dict, repeats: int) -> dict:
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def overhead(quick: bool = False) -> list[dict]:
    n_save = 100 if quick else 1000
    t1 = 2.0 if quick else 20.0
    system = ol.System(_lorenz, states=("x", "y", "z"), params=PARAMS, y0=[1.0, 1.0, 1.0],
                       t_span=(0.0, t1), name="lorenz")
    params = {k: jnp.asarray(v) for k, v in PARAMS.items()}
    ts = jnp.linspace(0.0, t1, n_save)

    @jax.jit
    def direct(p):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, a: _lorenz(t, y, a)), diffrax.Tsit5(), 0.0, t1, None,
            jnp.array([1.0, 1.0, 1.0]), args=p, saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-8),
            max_steps=16384, throw=False,
            adjoint=diffrax.RecursiveCheckpointAdjoint(),
        )
        return sol.ys

    def via_odelab():
        return ol.solve(system, params=params, saveat=n_save, solver="tsit5",
                        method="checkpoint").ys

    @jax.jit
    def direct_traced(p, t0, t1, rtol, atol):
        # what odelab compiles: times and tolerances as inputs, so new values never recompile
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, a: _lorenz(t, y, a)), diffrax.Tsit5(), t0, t1, None,
            jnp.array([1.0, 1.0, 1.0]), args=p,
            saveat=diffrax.SaveAt(ts=jnp.linspace(t0, t1, n_save)),
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            max_steps=16384, throw=False,
            adjoint=diffrax.RecursiveCheckpointAdjoint(),
        )
        return sol.ys

    settings = [jnp.asarray(x) for x in (0.0, t1, 1e-6, 1e-8)]
    loss_direct = jax.jit(jax.grad(lambda p: jnp.sum(direct(p) ** 2)))

    def grad_odelab():
        return ol.gradient(
            lambda p: jnp.sum(ol.solve(system, params=p, saveat=n_save, solver="tsit5").ys ** 2),
            params, method="checkpoint")

    # the way a training loop runs: the solve inside the user's own jitted function
    in_jit = jax.jit(lambda p: ol.solve(system, params=p, saveat=n_save, solver="tsit5",
                                        method="checkpoint").ys)
    grad_in_jit = jax.jit(lambda p: ol.gradient(
        lambda q: jnp.sum(ol.solve(system, params=q, saveat=n_save, solver="tsit5").ys ** 2),
        p, method="checkpoint"))

    traced = lambda: direct_traced(params, *settings)  # noqa: E731
    for fn in (lambda: direct(params), traced, via_odelab, lambda: in_jit(params),
               lambda: loss_direct(params), grad_odelab, lambda: grad_in_jit(params)):
        jax.block_until_ready(fn())  # compile
    repeats = 10 if quick else 50
    solve_t = _alternate({"diffrax": lambda: direct(params), "traced": traced,
                          "odelab": via_odelab, "in_jit": lambda: in_jit(params)}, repeats)
    grad_t = _alternate({"diffrax": lambda: loss_direct(params), "odelab": grad_odelab,
                         "in_jit": lambda: grad_in_jit(params)}, repeats)
    what = f"(Lorenz, {n_save} saves)"

    def row(benchmark, ours, theirs, target=""):
        return {"benchmark": benchmark, "diffrax_s": theirs, "odelab_s": ours,
                "ratio": ours / theirs, "overhead_ms": 1e3 * (ours - theirs), "note": target}

    return [
        row(f"solve inside jax.jit vs diffrax {what}", solve_t["in_jit"], solve_t["diffrax"],
            "target < 5%"),
        row(f"gradient inside jax.jit vs diffrax {what}", grad_t["in_jit"], grad_t["diffrax"],
            "target < 5%"),
        row(f"eager ol.solve vs jitted diffrax {what}", solve_t["odelab"], solve_t["diffrax"],
            "Python-side checks per call"),
        row(f"eager ol.solve vs jitted diffrax with t_span and tolerances as inputs {what}",
            solve_t["odelab"], solve_t["traced"], "what odelab compiles: no recompiling"),
        row(f"eager ol.gradient vs jitted diffrax gradient {what}", grad_t["odelab"],
            grad_t["diffrax"]),
    ]


_FIRST_SOLVE = """
import time, json
start = time.perf_counter()
import odelab as ol
imported = time.perf_counter()
sol = ol.solve(ol.gallery.lorenz(), saveat=200)
sol.ys.block_until_ready()
done = time.perf_counter()
print(json.dumps({"import_s": imported - start, "first_solve_s": done - imported}))
"""


def cold_warm() -> list[dict]:
    """First solve in a fresh process with an empty, then a filled, compilation cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, ODELAB_CACHE_DIR=cache)
        runs = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", _FIRST_SOLVE], env=env, check=True,
                                 capture_output=True, text=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    return [{"benchmark": "first solve in a new process (Lorenz): cold vs warm cache",
             "cold_s": cold["first_solve_s"], "warm_s": warm["first_solve_s"],
             "ratio": warm["first_solve_s"] / cold["first_solve_s"]}]


def import_times(quick: bool = False) -> list[dict]:
    """`import odelab` vs `import diffrax` in fresh processes, alternating, medians.

    Each is timed as a whole process less an interpreter that imports nothing, so the ratio
    compares what the imports themselves cost.
    """
    commands = {"nothing": "pass", "diffrax": "import diffrax", "odelab": "import odelab"}
    times = {k: [] for k in commands}
    env = dict(os.environ, ODELAB_CACHE_DIR="off")
    for _ in range(2 if quick else 7):
        for name, code in commands.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            times[name].append(time.perf_counter() - start)
    base, diffrax_s, odelab_s = (statistics.median(times[k]) for k in commands)
    return [{"benchmark": "import odelab vs import diffrax (fresh process)",
             "diffrax_s": diffrax_s - base, "odelab_s": odelab_s - base,
             "ratio": (odelab_s - base) / (diffrax_s - base), "note": "target ≤ 1.3"}]


def run(quick: bool = False) -> list[dict]:
    return overhead(quick) + cold_warm() + import_times(quick)


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
