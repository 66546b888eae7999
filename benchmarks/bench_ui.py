"""Explorer latency: from a parameter change to updated plot data, headless.

Lorenz63 (t 0..20) with 1000 save points, solver tsit5, rtol 1e-6. Each measurement sets one
parameter as a released slider does and stops the clock when the Bokeh ColumnDataSources hold
the new trajectory (and gradient): solve, phase plane (direction field and equilibria), gradient
by method "auto", and the plot updates. Medians and 95th percentiles after a warm-up that
compiles; the number of compilations during the timed moves is reported too (target 0).
Target: median ≤ 30 ms for the trajectory and its gradient.

    python benchmarks/bench_ui.py          # 60 moves per row
    python benchmarks/bench_ui.py --quick  # 15 moves per row
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

import odelab as ol


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


def run(quick: bool = False) -> list[dict]:
    """Latency rows: trajectory only, and trajectory + gradient."""
    moves = 15 if quick else 60
    rows = []
    for with_gradient in (False, True):
        explorer = ol.explore(ol.gallery.lorenz(), n_save=1000, solver="tsit5", rtol=1e-6,
                              atol=1e-8, t0=0.0, t1=20.0, compute_gradient=with_gradient)
        explorer.__panel__().get_root()  # first render: compiles everything
        assert explorer.status_level == "success", explorer.status
        _latencies(explorer, "rho", np.linspace(27.0, 29.0, 3))  # warm-up
        values = np.linspace(24.0, 32.0, moves)
        times, compiles = _latencies(explorer, "rho", values)
        data = explorer.plots.trajectory.source.data
        assert len(data["t"]) == 1000
        what = "slider → trajectory + gradient" if with_gradient else "slider → trajectory"
        rows.append(_row(what, times, compiles,
                         "target median ≤ 30 ms" if with_gradient else ""))
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| problem | what | median (ms) | p95 (ms) | moves | compilations | note |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['problem']} | {r['what']} | {r['median_ms']:.1f} | "
                     f"{r['p95_ms']:.1f} | {r['moves']} | {r['compilations']} | {r['note']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv)))
