"""The explorer's first frame of a new system: when each view's data is set, in a fresh process.

Lorenz63 (t 0..20, 1000 saves, tsit5) in a new Python process with the compilation cache off,
so every program compiles, as for a user opening the explorer of a system for the first time;
one more pair of processes shares a fresh cache, the second loading what the first compiled.
The clock starts at the explorer's first request (after `import odelab`) and reads, through the
plots' `show` methods, when the trajectory, the phase plane and the gradient are set, and when
everything is done. With `background=True` the work runs on the explorer's worker thread.

The figures that matter are ratios: the time to the first trajectory over the time until all views
are done, in the same process (the explorer draws each view as soon as its own program is ready;
before it did, the trajectory waited for all of them, a ratio of 1), and the time to the first
trajectory over the first call of diffrax's own jitted solve of the same problem (also in a fresh
process), the anchor issue 18 measures against.

The next choice: after the first frame, picking the next solver in the menu (tsit5 -> dopri5), in
a fresh process with compiling ahead on (the explorer compiles it while the person looks; the
clock starts once that is done) and in another with it off: the time until every view of the
new solver is drawn, with and without (full run only).

    python benchmarks/bench_first_frame.py            # both modes, Trajectory and Gradient tabs
    python benchmarks/bench_first_frame.py --quick    # background=False, Trajectory tab only
    python benchmarks/bench_first_frame.py --code /path/to/other/checkout   # another version
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, sys, time
if sys.argv[3:] == ["diffrax-first"]:
    import diffrax, equinox  # a user's imports before odelab's
import odelab as ol
from odelab.ui import plots

background, view = sys.argv[1] == "1", sys.argv[2]
marks, start = {}, [None]

def mark(name, cls):
    original = getattr(plots, cls).show
    def show(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        marks.setdefault(name, time.perf_counter() - start[0])
        return out
    setattr(getattr(plots, cls), "show", show)

mark("trajectory", "TrajectoryPlot")
mark("phase", "PhasePlot")
mark("gradient", "GradientPlot")
ex = ol.explore(ol.gallery.lorenz(), n_save=1000, solver="tsit5", rtol=1e-6, atol=1e-8,
                t0=0.0, t1=20.0, background=background, view=view)
start[0] = time.perf_counter()
ex.refresh()
ex.wait()
marks["all"] = time.perf_counter() - start[0]
assert ex.status_level == "success", ex.status
assert len(ex.plots.trajectory.source.data["t"]) == 1000
ex.close()
print(json.dumps(marks))
"""


_BARE = r"""
import json, time
import jax
jax.config.update("jax_enable_x64", True)
import diffrax
import jax.numpy as jnp

def field(t, y, p):
    sigma, rho, beta = p
    return jnp.stack([sigma * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - beta * y[2]])

@jax.jit
def solve(p):
    return diffrax.diffeqsolve(
        diffrax.ODETerm(field), diffrax.Tsit5(), 0.0, 20.0, None, jnp.ones(3), p,
        saveat=diffrax.SaveAt(ts=jnp.linspace(0.0, 20.0, 1000)),
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-8), max_steps=16384).ys

start = time.perf_counter()
solve(jnp.array([10.0, 28.0, 8.0 / 3.0])).block_until_ready()
print(json.dumps({"first_solve": time.perf_counter() - start}))
"""


_SWITCH = r"""
import json, os, sys, time
os.environ["ODELAB_COMPILE_AHEAD"] = sys.argv[1]
import odelab as ol
ex = ol.explore(ol.gallery.lorenz(), n_save=1000, solver="tsit5", rtol=1e-6, atol=1e-8,
                t0=0.0, t1=20.0)
ex.__panel__()  # displayed (its layout built): the first frame, then the ahead queue
start = time.perf_counter()
assert ex.ahead.wait(900)
ahead = time.perf_counter() - start
start = time.perf_counter()
ex.solver = "dopri5"  # the next solver in the menu: trajectory, phase plane, gradient
switch = time.perf_counter() - start
assert ex.status_level == "success", ex.status
assert ex._last.trajectory.solver == "dopri5" and ex._last.gradient is not None
print(json.dumps({"ahead_s": ahead, "switch_s": switch, "failed": len(ex.ahead.failed)}))
"""


def _child(code: str, args: list[str], source: Path = ROOT, cache: str = "off") -> dict:
    env = dict(os.environ, ODELAB_CACHE_DIR=cache, PANEL_INLINE="1",
               PYTHONPATH=os.pathsep.join([str(source), os.environ.get("PYTHONPATH", "")]))
    # run from `source`: `python -c` puts the working directory first on the path
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, check=True, cwd=source,
                         capture_output=True, text=True, timeout=900)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bare_first_solve() -> float:
    """diffrax's own jitted Tsit5 solve of the same problem, first call in a fresh process."""
    return _child(_BARE, [])["first_solve"]


def first_frame(background: bool, view: str = "Trajectory", code: Path = ROOT) -> dict:
    """Seconds from the first request to each view's data, in a fresh process (cache off)."""
    return _child(_CHILD, ["1" if background else "0", view], code)


def warm_and_cold(code: Path = ROOT) -> tuple[dict, dict]:
    """The first frame in a fresh process with an empty cache, then in another that finds it
    filled by the first (both import diffrax and equinox before odelab)."""
    with tempfile.TemporaryDirectory() as cache:
        cold = _child(_CHILD, ["0", "Trajectory", "diffrax-first"], code, cache)
        warm = _child(_CHILD, ["0", "Trajectory", "diffrax-first"], code, cache)
    return cold, warm


def run(quick: bool = False, code: Path = ROOT) -> list[dict]:
    cases = [(False, "Trajectory")] if quick else [
        (False, "Trajectory"), (True, "Trajectory"), (True, "Gradient")]
    rows = []
    for background, view in cases:
        m = first_frame(background, view, code)
        rows.append({
            "benchmark": f"first frame of Lorenz (1000 saves), background={background}, "
                         f"{view} tab",
            "trajectory_s": m["trajectory"], "phase_s": m.get("phase", float("nan")),
            "gradient_s": m.get("gradient", float("nan")), "all_s": m["all"],
            "ratio": m["trajectory"] / m["all"],
            "note": "first trajectory / all views done (1 = the trajectory waits for all)",
        })
    cold, warm = warm_and_cold(code)
    rows.append({
        "benchmark": "first frame of Lorenz with a warm compilation cache / with an empty one "
                     "(diffrax imported first, fresh processes)",
        "trajectory_s": warm["trajectory"], "phase_s": warm.get("phase", float("nan")),
        "gradient_s": warm.get("gradient", float("nan")), "all_s": cold["trajectory"],
        "ratio": warm["trajectory"] / cold["trajectory"],
        "note": "target ≤ 0.3 (issue 18); all_s here: the first trajectory with an empty cache",
    })
    if not quick:
        off = _child(_SWITCH, ["0"], code)
        on = _child(_SWITCH, ["1"], code)
        rows.append({
            "benchmark": "next solver after the first frame (Lorenz, tsit5 -> dopri5), compiled "
                         "ahead / not (fresh processes)",
            "trajectory_s": on["switch_s"], "phase_s": float("nan"),
            "gradient_s": float("nan"), "all_s": off["switch_s"],
            "ratio": on["switch_s"] / off["switch_s"],
            "note": f"trajectory_s: every view with compile-ahead, after its "
                    f"{on['ahead_s']:.1f} s in the background; all_s: without",
        })
    bare = bare_first_solve()
    rows.append({
        "benchmark": "first trajectory of Lorenz in the explorer / diffrax's own first solve "
                     "(fresh processes)",
        "trajectory_s": rows[0]["trajectory_s"], "phase_s": float("nan"),
        "gradient_s": float("nan"), "all_s": bare, "ratio": rows[0]["trajectory_s"] / bare,
        "note": "target ≤ 1.5 (issue 18); all_s here: diffrax's first jitted Tsit5 solve",
    })
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| benchmark | trajectory (s) | phase (s) | gradient (s) | all (s) | ratio |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['benchmark']} | {r['trajectory_s']:.2f} | {r['phase_s']:.2f} | "
                     f"{r['gradient_s']:.2f} | {r['all_s']:.2f} | {r['ratio']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    args = sys.argv[1:]
    code = Path(args[args.index("--code") + 1]) if "--code" in args else ROOT
    print(markdown(run(quick="--quick" in args, code=code)))
