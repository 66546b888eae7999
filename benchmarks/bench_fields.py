"""Batched evaluations measured side by side: gradient fields, ensembles on 1 vs 8 devices, spectra.

Rows (problem, what, method, seconds, ratio, note); read the ratios:
- Lotka–Volterra 32×32 gradient field: a Python loop of single jitted gradients / the batched
  `ol.gradient_field` (target ≥ 10).
- Ensemble of Lorenz solves: throughput on 8 simulated CPU devices / on 1 (each in a subprocess,
  since the device count is fixed when JAX starts). On a 2-core machine 8 simulated devices
  cannot be faster than the cores allow; the row shows the sharded path works and what it costs.
- Hessian spectrum of a 2000-parameter quadratic: HVPs Lanczos needs for the top 5 eigenvalues
  at relative residual 1e-8 (eigenvalue error below 1e-6), against the 2000 a dense Hessian needs.

    python benchmarks/bench_fields.py          # full
    python benchmarks/bench_fields.py --quick  # smaller grid for the loop, fewer members
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np

import odelab as ol


def _row(problem, what, method, seconds, ratio, note=""):
    return {"problem": problem, "what": what, "method": method, "seconds": seconds,
            "ratio": ratio, "note": note}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------
def field_rows(quick: bool) -> list[dict]:
    system = ol.gallery.lotka_volterra()
    ts = np.linspace(0.0, 5.0, 20)
    data = np.asarray(ol.solve(system, saveat=ts, t_span=(0.0, 5.0)).ys)

    def loss(p):
        return jnp.sum((ol.solve(system, params=p, saveat=ts, t_span=(0.0, 5.0)).ys - data) ** 2)

    n = 32
    x, y = ("alpha", 1.0, 2.0), ("beta", 0.5, 1.5)
    # the first call compiles the vmapped program for this chunk size (reported as its own row);
    # the timed call then reuses it, as every later call with new parameter values does
    start = time.perf_counter()
    ol.gradient_field(loss, system.params, x=x, y=y, n=n)
    first = time.perf_counter() - start
    batched = min(_timed(lambda: ol.gradient_field(loss, system.params, x=x, y=y, n=n))
                  for _ in range(3))
    # the loop: one jitted gradient per grid point (same method the field picks)
    xs, ys = np.linspace(1.0, 2.0, n), np.linspace(0.5, 1.5, n)
    points = [(a, b) for b in ys for a in xs]
    if quick:
        points = points[:: 4]  # time a quarter of the grid and scale: same per-point cost
    ol.gradient(loss, dict(system.params, alpha=1.0, beta=1.0))  # warm-up
    start = time.perf_counter()
    for a, b in points:
        g = ol.gradient(loss, dict(system.params, alpha=a, beta=b))
    jax.block_until_ready(g)
    loop = (time.perf_counter() - start) * (n * n / len(points))
    return [
        _row("Lotka–Volterra 32×32", "gradient field, first call (compiles)", "auto", first,
             first / batched, "ratio = first call / warm call"),
        _row("Lotka–Volterra 32×32", "gradient field, batched", "auto", batched, 1.0),
        _row("Lotka–Volterra 32×32", "loop of single gradients / batched", "auto", loop,
             loop / batched, "target ≥ 10" + (" (loop timed on 1/4 of the grid)" if quick else "")),
    ]


# --------------------------------------------------------------------------------------------
_ENSEMBLE = textwrap.dedent("""
    import sys, time, numpy as np, jax
    import odelab as ol
    members = int(sys.argv[1])
    system = ol.gallery.lorenz()
    rhos = np.linspace(20.0, 30.0, members)
    run = lambda: ol.solve_ensemble(system, params_batch={"rho": rhos}, saveat=50,
                                    t_span=(0.0, 2.0), solver="tsit5")
    jax.block_until_ready(run().ys)
    start = time.perf_counter()
    for _ in range(3):
        jax.block_until_ready(run().ys)
    print(len(jax.devices()), (time.perf_counter() - start) / 3)
""")


def _ensemble_seconds(devices: int, members: int) -> float:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", _ENSEMBLE, str(members)], env=env,
                         capture_output=True, text=True, timeout=1800, check=True)
    n_dev, seconds = out.stdout.split()[-2:]
    assert int(n_dev) == devices
    return float(seconds)


def ensemble_rows(quick: bool) -> list[dict]:
    members = 256 if quick else 2048
    one = _ensemble_seconds(1, members)
    eight = _ensemble_seconds(8, members)
    note = f"{members} members; {os.cpu_count()} CPU cores"
    return [
        _row("Lorenz ensemble", "members/s on 1 device", "vmap", one, members / one, note),
        _row("Lorenz ensemble", "members/s on 8 simulated devices", "vmap + sharding", eight,
             members / eight, note),
        _row("Lorenz ensemble", "throughput 8 devices / 1 device", "sharding", eight,
             one / eight, note),
    ]


# --------------------------------------------------------------------------------------------
def spectrum_rows(quick: bool) -> list[dict]:
    n = 2000
    rng = np.random.default_rng(1)
    u = rng.standard_normal((3, n))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    lam = np.concatenate([[100.0, 90.0, 80.0, 70.0, 60.0], rng.uniform(1.0, 50.0, n - 5)])
    uj, lamj = jnp.asarray(u), jnp.asarray(lam)

    def loss(p):
        x = p["w"]
        for row in uj:
            x = x - 2 * row * (row @ x)
        return 0.5 * jnp.sum(lamj * x**2)

    params = {"w": jnp.asarray(rng.standard_normal(n))}
    start = time.perf_counter()
    spec = ol.hessian_spectrum(loss, params, k=5, which="largest")
    seconds = time.perf_counter() - start
    err = float(np.max(np.abs(spec.eigenvalues - lam[:5]) / lam[:5]))
    return [_row(f"quadratic, {n} parameters", "HVPs for top-5 eigenvalues", "lanczos", seconds,
                 spec.hvps / n, f"{spec.hvps} HVPs (ratio = HVPs / n); max relative error "
                 f"{err:.1e}")]


def run(quick: bool = False) -> list[dict]:
    """Every measurement, as a list of rows (problem, what, method, seconds, ratio, note)."""
    rows: list[dict] = []
    for part in (field_rows, spectrum_rows, ensemble_rows):
        new = part(quick)
        print(markdown(new), file=sys.stderr, flush=True)
        rows += new
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| problem | what | method | seconds | ratio | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['problem']} | {r['what']} | {r['method']} | {r['seconds']:.4g} | "
                     f"{r['ratio']:.3g} | {r['note']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv)))
