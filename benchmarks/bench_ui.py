"""Explorer latency: from a parameter change to updated plot data, headless.

Lorenz63 (t 0..20) with 1000 save points, solver tsit5, rtol 1e-6. Each measurement sets one
parameter as a released slider does and stops the clock when the Bokeh ColumnDataSources hold
the new trajectory (and gradient): solve, phase plane (direction field and equilibria), gradient
by method "auto", and the plot updates. Medians and 95th percentiles after a warm-up that
compiles; the number of compilations during the timed moves is reported too (target 0).
Target: median ≤ 30 ms for the trajectory and its gradient.

Side by side in the same run, the same solve and gradient called bare: diffrax's Tsit5 with the
same tolerances and save points, jitted, and `jax.grad` of the same loss (the sum of squares of
the final state, the explorer's default) through diffrax's default adjoint. The ratio row says
what the explorer's machinery (argument handling, the loss's pipeline, plot updates) adds to the
computation itself. Target: ≤ 1.3.

    python benchmarks/bench_ui.py          # 60 moves per row
    python benchmarks/bench_ui.py --quick  # 15 moves per row
"""

from __future__ import annotations

import statistics
import sys
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import odelab as ol

T1, N_SAVE, RTOL, ATOL = 20.0, 1000, 1e-6, 1e-8


def _latencies(explorer, name: str, values: np.ndarray) -> tuple[list[float], int]:
    before = ol.compile_count()
    times = []
    for value in values:
        start = time.perf_counter()
        explorer.set_value(name, float(value))  # returns once the sources hold the new data
        times.append(time.perf_counter() - start)
    return times, ol.compile_count() - before


def _row(what: str, times: list[float], compilations: int, note: str = "") -> dict:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"problem": "lorenz (1000 saves)", "what": what, "median_ms": 1e3 *
            statistics.median(times), "p95_ms": 1e3 * p95, "moves": len(times),
            "compilations": compilations, "note": note}


def _bare_programs():
    """The explorer's solve and gradient written directly against diffrax, jitted."""
    def field(t, y, p):
        x, yy, z = y
        return jnp.stack([p["sigma"] * (yy - x), x * (p["rho"] - z) - yy, x * yy - p["beta"] * z])

    ts = jnp.linspace(0.0, T1, N_SAVE)

    def solve(p):
        return diffrax.diffeqsolve(
            diffrax.ODETerm(field), diffrax.Tsit5(), 0.0, T1, None, jnp.array([1.0, 1.0, 1.0]),
            args=p, saveat=diffrax.SaveAt(ts=ts), max_steps=100_000,
            stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL)).ys

    def loss(p):
        return jnp.sum(solve(p)[-1] ** 2)

    return jax.jit(solve), jax.jit(jax.grad(loss))


def _bare_latencies(values: np.ndarray) -> list[float]:
    solve, grad = _bare_programs()
    base = {"sigma": 10.0, "rho": 28.0, "beta": 8.0 / 3.0}

    def move(value: float) -> None:
        p = {k: jnp.asarray(value if k == "rho" else v) for k, v in base.items()}
        jax.block_until_ready((np.asarray(solve(p)), grad(p)))

    for value in values[:3]:  # compile and warm up
        move(float(value))
    times = []
    for value in values:
        start = time.perf_counter()
        move(float(value))
        times.append(time.perf_counter() - start)
    return times


def run(quick: bool = False) -> list[dict]:
    """Latency rows: trajectory only, trajectory + gradient, and the same called bare."""
    moves = 15 if quick else 60
    rows = []
    values = np.linspace(24.0, 32.0, moves)
    bare = statistics.median(_bare_latencies(values))
    for with_gradient in (False, True):
        explorer = ol.explore(ol.gallery.lorenz(), n_save=N_SAVE, solver="tsit5", rtol=RTOL,
                              atol=ATOL, t0=0.0, t1=T1, compute_gradient=with_gradient)
        explorer.__panel__().get_root()  # first render: compiles everything
        assert explorer.status_level == "success", explorer.status
        _latencies(explorer, "rho", np.linspace(27.0, 29.0, 3))  # warm-up
        times, compiles = _latencies(explorer, "rho", values)
        data = explorer.plots.trajectory.source.data
        assert len(data["t"]) == 1000
        what = "slider → trajectory + gradient" if with_gradient else "slider → trajectory"
        rows.append(_row(what, times, compiles,
                         "target median ≤ 30 ms" if with_gradient else ""))
    slider = rows[-1]["median_ms"] / 1e3
    rows.append({"problem": "lorenz (1000 saves)",
                 "what": "slider → trajectory + gradient / bare diffrax solve + jax.grad",
                 "median_ms": 1e3 * bare, "ratio": slider / bare, "moves": moves,
                 "note": "target ≤ 1.3 (median_ms: the bare pair)"})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| problem | what | median (ms) | p95 (ms) | ratio | moves | compilations | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p95 = f"{r['p95_ms']:.1f}" if "p95_ms" in r else ""
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        lines.append(f"| {r['problem']} | {r['what']} | {r['median_ms']:.1f} | {p95} | {ratio} | "
                     f"{r['moves']} | {r.get('compilations', '')} | {r['note']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv)))
