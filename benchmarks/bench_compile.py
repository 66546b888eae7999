"""Where a first call's time goes: tracing, lowering and XLA compilation, per program.

The programs a new explorer and the gradient check build (a trajectory, a gradient, a stiff
solve and gradient, a delay solve), and bare diffrax's solve of the same Lorenz problem as the
anchor, each taken through JAX's ahead-of-time stages in a fresh process with the compilation
cache off: `jax.jit(f).trace(...)` (Python runs the user's and odelab's code and records a
jaxpr), `.lower()` (the jaxpr becomes StableHLO) and `.compile()` (XLA optimises and generates
machine code), then one run of the compiled program. The shares say which stage to cut: tracing
is odelab's and diffrax's Python, compiling is XLA's work on the program's size.

    python benchmarks/bench_compile.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, sys, time
import jax, jax.numpy as jnp, numpy as np
import odelab as ol
import diffrax

name = sys.argv[1]
jax.block_until_ready(jax.jit(lambda x: x + 1)(1.0))  # JAX's own start-up, not counted
lorenz, robertson = ol.gallery.lorenz(), ol.gallery.robertson()

def lorenz_diffrax(y0):
    s, r, b = 10.0, 28.0, 8.0 / 3.0
    f = lambda t, y, a: jnp.stack([s * (y[1] - y[0]), y[0] * (r - y[2]) - y[1],
                                   y[0] * y[1] - b * y[2]])
    return diffrax.diffeqsolve(
        diffrax.ODETerm(f), diffrax.Tsit5(), 0.0, 20.0, None, y0,
        saveat=diffrax.SaveAt(ts=jnp.linspace(0.0, 20.0, 1000)),
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-9), max_steps=100_000).ys

programs = {
    "bare diffrax solve (Lorenz, tsit5)": (lorenz_diffrax, jnp.asarray(lorenz.y0)),
    "odelab solve (Lorenz, tsit5)": (
        lambda p: ol.solve(lorenz, params=p, saveat=1000, solver="tsit5").ys,
        dict(lorenz.params)),
    "odelab gradient, auto (Lorenz, tsit5)": (
        lambda p: ol.gradient(lambda q: jnp.sum(
            ol.solve(lorenz, params=q, saveat=1000, solver="tsit5").ys ** 2), p),
        dict(lorenz.params)),
    "odelab solve (Robertson, kvaerno5)": (
        lambda p: ol.solve(robertson, params=p, saveat=100, solver="kvaerno5").ys,
        dict(robertson.params)),
    "odelab gradient, auto (Robertson, kvaerno5)": (
        lambda p: ol.gradient(lambda q: ol.solve(robertson, params=q, saveat=2,
                                                 solver="kvaerno5").ys[-1, 0], p),
        dict(robertson.params)),
}
f, arg = programs[name]
jitted = jax.jit(f)
t0 = time.perf_counter(); traced = jitted.trace(arg)
t1 = time.perf_counter(); lowered = traced.lower()
t2 = time.perf_counter(); compiled = lowered.compile()
t3 = time.perf_counter(); jax.block_until_ready(compiled(arg))
t4 = time.perf_counter()
print(json.dumps({"trace_s": t1 - t0, "lower_s": t2 - t1, "compile_s": t3 - t2,
                  "run_s": t4 - t3}))
"""

NAMES = [
    "bare diffrax solve (Lorenz, tsit5)",
    "odelab solve (Lorenz, tsit5)",
    "odelab gradient, auto (Lorenz, tsit5)",
    "odelab solve (Robertson, kvaerno5)",
    "odelab gradient, auto (Robertson, kvaerno5)",
]


def _measure(name: str) -> dict:
    env = dict(os.environ, ODELAB_CACHE_DIR="off")
    out = subprocess.run([sys.executable, "-c", _CHILD, name], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{name}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict]:
    """One row per program: seconds per stage, each stage's share of the first call, and the
    first call over bare diffrax's (quick: the Lorenz solves and gradient only)."""
    names = NAMES[:3] if quick else NAMES
    rows, anchor = [], None
    for name in names:
        m = _measure(name)
        first = m["trace_s"] + m["lower_s"] + m["compile_s"] + m["run_s"]
        anchor = anchor or first
        rows.append({
            "program": name,
            "trace_s": m["trace_s"], "lower_s": m["lower_s"], "compile_s": m["compile_s"],
            "run_s": m["run_s"], "first_call_s": first,
            "trace %": 100 * m["trace_s"] / first, "lower %": 100 * m["lower_s"] / first,
            "compile %": 100 * m["compile_s"] / first,
            "ratio": first / anchor,
            "note": "first call / bare diffrax solve's; compilation cache off",
        })
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
