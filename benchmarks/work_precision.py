"""Work-precision of odelab's stiff solvers against diffrax's Kvaerno5 and scipy's stiff codes.

For each problem (HIRES, van der Pol ε=1e-6, Robertson, Oregonator) and tolerance, the error
at the final time against the published reference solution and the wall time of one solve
(median of repeats after a warm-up that includes compilation). JAX tolerances are traced, so
each (solver, problem) compiles once.

    python benchmarks/work_precision.py          # full: rtol 1e-4 .. 1e-10
    python benchmarks/work_precision.py --quick  # two tolerances
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

import odelab  # noqa: F401  (float64)
from odelab.solve.solvers import RadauIIA5, Rodas5
from odelab.solve.solvers.testset import PROBLEMS, relative_error

PROBLEM_NAMES = ["hires", "van_der_pol", "robertson", "oregonator"]
JAX_SOLVERS = {"Rodas5": Rodas5, "RadauIIA5": RadauIIA5, "Kvaerno5": diffrax.Kvaerno5}
SCIPY_METHODS = {"scipy Radau": "Radau", "scipy BDF": "BDF", "scipy LSODA": "LSODA"}
METHODS = list(JAX_SOLVERS) + list(SCIPY_METHODS)


def _atol(problem, rtol):
    # Absolute tolerance a hundredth of rtol relative to each component's typical size.
    return np.asarray(problem.atol_scale) * rtol * 1e-2


def _median_time(run, repeats, budget):
    """Median wall time of `run()` after one warm-up call; fewer repeats past `budget` s."""
    start = time.perf_counter()
    result = run()
    warmup = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        if times and sum(times) > budget:
            break
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times) if times else warmup


def _jax_program(solver_cls, problem, max_steps):
    @jax.jit
    def solve(y0, rtol, atol):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(problem.field), solver_cls(), 0.0, problem.t1, problem.dt0, y0,
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            max_steps=max_steps, throw=False,
        )
        return sol.ys[-1], sol.result == diffrax.RESULTS.successful, sol.stats["num_steps"]

    return solve


def _measure_jax(program, problem, rtol, repeats, budget):
    y0 = jnp.asarray(problem.y0, dtype=jnp.float64)
    rtol_, atol_ = jnp.asarray(rtol), jnp.asarray(_atol(problem, rtol))

    def run():
        y, ok, steps = program(y0, rtol_, atol_)
        return np.asarray(jax.block_until_ready(y)), bool(ok), int(steps)

    (y, ok, steps), seconds = _median_time(run, repeats, budget)
    return y, ok, steps, seconds


def _measure_scipy(method, problem, rtol, repeats, budget):
    def run():
        return solve_ivp(problem.field_np, (0.0, problem.t1), problem.y0, method=method,
                         rtol=rtol, atol=_atol(problem, rtol), first_step=problem.dt0)

    sol, seconds = _median_time(run, repeats, budget)
    return sol.y[:, -1], bool(sol.success), int(sol.t.size - 1), seconds


def run(quick: bool) -> list[dict]:
    """One row per (problem, rtol, method): error, seconds, steps, ok."""
    rtols = [1e-5, 1e-8] if quick else [1e-4, 1e-6, 1e-8, 1e-10]
    repeats, budget = (3, 2.0) if quick else (7, 10.0)
    max_steps = 50_000 if quick else 500_000
    rows = []
    for name in PROBLEM_NAMES:
        problem = PROBLEMS[name]
        floor = np.asarray(problem.atol_scale)
        for label, solver_cls in JAX_SOLVERS.items():
            program = _jax_program(solver_cls, problem, max_steps)
            for rtol in rtols:
                y, ok, steps, seconds = _measure_jax(program, problem, rtol, repeats, budget)
                rows.append(_row(name, rtol, label, y, ok, steps, seconds, problem, floor))
        for label, method in SCIPY_METHODS.items():
            for rtol in rtols:
                y, ok, steps, seconds = _measure_scipy(method, problem, rtol, repeats, budget)
                rows.append(_row(name, rtol, label, y, ok, steps, seconds, problem, floor))
    return rows


def _row(name, rtol, label, y, ok, steps, seconds, problem, floor):
    error = relative_error(y, problem.reference, floor=floor) if ok else float("nan")
    return dict(problem=name, rtol=rtol, method=label, error=error, seconds=seconds,
                steps=steps, ok=ok)


def cost_at_accuracy(rows, problem, method, error):
    """Seconds `method` needs for `error` on `problem`, interpolated log-log between its
    tolerances; None when its measured errors do not bracket the target."""
    points = sorted(
        (np.log10(r["error"]), np.log10(r["seconds"]))
        for r in rows
        if r["problem"] == problem and r["method"] == method and r["ok"] and r["error"] > 0
    )
    if len(points) < 2 or not points[0][0] <= np.log10(error) <= points[-1][0]:
        return None
    log_err, log_time = zip(*points, strict=True)
    return float(10 ** np.interp(np.log10(error), log_err, log_time))


def markdown(rows) -> str:
    """The rows as a table (error / ms, steps) plus time ratios to scipy Radau at matched
    accuracy."""
    lines = ["| problem | rtol | " + " | ".join(METHODS) + " |",
             "|---|---|" + "---|" * len(METHODS)]
    for name in PROBLEM_NAMES:
        for rtol in sorted({r["rtol"] for r in rows}, reverse=True):
            cells = []
            for method in METHODS:
                match = [r for r in rows if (r["problem"], r["rtol"], r["method"])
                         == (name, rtol, method)]
                if not match:
                    cells.append("")
                    continue
                r = match[0]
                if not r["ok"]:
                    cells.append(f"failed ({r['steps']} steps)")
                else:
                    cells.append(f"{r['error']:.1e} / {r['seconds'] * 1e3:.1f} ms "
                                 f"({r['steps']})")
            lines.append(f"| {name} | {rtol:.0e} | " + " | ".join(cells) + " |")
    lines += ["", "Time relative to scipy Radau at the same error (log-log interpolation):", "",
              "| problem | error | " + " | ".join(METHODS) + " |",
              "|---|---|" + "---|" * len(METHODS)]
    for name in PROBLEM_NAMES:
        for target in (1e-4, 1e-6, 1e-8):
            base = cost_at_accuracy(rows, name, "scipy Radau", target)
            if base is None:
                continue
            cells = []
            for method in METHODS:
                cost = cost_at_accuracy(rows, name, method, target)
                cells.append("–" if cost is None else f"{cost / base:.3f}")
            lines.append(f"| {name} | {target:.0e} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two tolerances, fewer repeats")
    args = parser.parse_args(argv)
    rows = run(quick=args.quick)
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
