"""Cost of derivatives through `ol.solve`, per gradient method, measured side by side.

Rows (all times are medians after a warm-up call; ratios are what to read):
- Lorenz63, t 0..20, 1000 save points: gradient / solve for each method and "auto".
- Neural ODE (MLP 2→64→64→2, 100 save points): gradient / solve with "auto" (target ≤ 4).
- A ≥10k-parameter neural ODE, and Lorenz: HVP / gradient per second-order route (target ≤ 4
  with "auto").
- 20 parameters: dense Hessian / one gradient.
- The interpolating adjoint on Lorenz (1000 saves): gradient / solve (target ≤ 6) and HVP /
  its own gradient (target ≤ 4), whole and checkpointed, side by side in one run.
- 100k fixed steps: peak temporary memory of a gradient / the forward solve, from XLA's compiled
  memory analysis (target ≤ 3); the checkpointed interpolating adjoint's memory against
  max_steps.

    python benchmarks/bench_gradients.py          # full
    python benchmarks/bench_gradients.py --quick  # fewer repeats
"""

from __future__ import annotations

import statistics
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import odelab as ol


def _median_seconds(fn, *args, repeats: int) -> float:
    return _side_by_side({"fn": fn}, *args, repeats=repeats)["fn"]


def _side_by_side(fns: dict, *args, repeats: int) -> dict:
    """Median seconds of each program on `args`, compiled first, then timed in turn: every
    round runs each once, so load on the machine and cache warmth hit all of them alike."""
    for fn in fns.values():
        jax.block_until_ready(fn(*args))  # warm-up: trace and compile
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _ratio_row(problem, what, method, num, den, note=""):
    return {"problem": problem, "what": what, "method": method, "seconds": num,
            "ratio": num / den, "note": note}


# --------------------------------------------------------------------------------------------
def lorenz_rows(repeats: int, methods: list[str]) -> list[dict]:
    system = ol.gallery.lorenz()
    params = {k: jnp.asarray(v) for k, v in system.params.items()}

    def loss(p, method=None):
        ys = ol.solve(system, params=p, t_span=(0.0, 20.0), saveat=1000, rtol=1e-6,
                      atol=1e-8, method=method, solver="tsit5").ys
        return jnp.mean(ys**2)

    fns = {"-": jax.jit(loss)}
    fns.update({m: jax.jit(lambda p, m=m: ol.gradient(loss, p, m)) for m in methods})
    t = _side_by_side(fns, params, repeats=repeats)
    rows = [_ratio_row("lorenz (1000 saves)", "solve", "-", t["-"], t["-"])]
    for m in methods:
        rows.append(_ratio_row("lorenz (1000 saves)", "gradient / solve", m, t[m], t["-"]))
    return rows


def _mlp_system(width: int, depth: int, seed: int = 0):
    system = ol.gallery.neural_ode(key=jax.random.key(seed), width=width, depth=depth)
    mlp = system.params
    n = sum(x.size for x in jax.tree_util.tree_leaves(eqx.filter(mlp, eqx.is_inexact_array)))
    return system, mlp, n


def neural_rows(repeats: int, methods: list[str]) -> list[dict]:
    system, mlp, n = _mlp_system(64, 2)
    target = jnp.stack([jnp.cos(jnp.linspace(0, 1, 100)), jnp.sin(jnp.linspace(0, 1, 100))], 1)

    def loss(p, method=None):
        ys = ol.solve(system, params=p, saveat=100, rtol=1e-6, atol=1e-8, method=method,
                      solver="tsit5").ys
        return jnp.mean((ys - target) ** 2)

    fns = {"-": eqx.filter_jit(loss)}
    fns.update({m: eqx.filter_jit(lambda p, m=m: ol.gradient(loss, p, m)) for m in methods})
    t = _side_by_side(fns, mlp, repeats=repeats)
    name = f"neural ODE 2→64→64→2 ({n} params)"
    rows = [_ratio_row(name, "solve", "-", t["-"], t["-"])]
    for m in methods:
        rows.append(_ratio_row(name, "gradient / solve", m, t[m], t["-"],
                               "target ≤ 4" if m == "auto" else ""))
    return rows


def hvp_rows(repeats: int) -> list[dict]:
    """HVP / gradient on a ≥10k-parameter neural ODE, per second-order route."""
    system, mlp, n = _mlp_system(100, 2, seed=1)
    diff, static = eqx.partition(mlp, eqx.is_inexact_array)
    vec = jax.tree_util.tree_map(jnp.ones_like, diff)

    def loss(p):
        ys = ol.solve(system, params=p, saveat=20, rtol=1e-8, atol=1e-10, solver="tsit5").ys
        return jnp.mean(ys**2)

    name = f"MLP 2→100→100→2 ({n} params)"
    routes = ("auto", "checkpoint", "interpolating", "direct")
    fns = {"gradient": eqx.filter_jit(lambda d: ol.gradient(loss, eqx.combine(d, static)))}
    fns.update({m: eqx.filter_jit(lambda d, m=m: ol.hvp(loss, eqx.combine(d, static), vec, m))
                for m in routes})
    t = _side_by_side(fns, diff, repeats=repeats)
    rows = [_ratio_row(name, "gradient", "auto", t["gradient"], t["gradient"])]
    for m in routes:
        rows.append(_ratio_row(name, "HVP / gradient (auto)", m, t[m], t["gradient"],
                               "target ≤ 4" if m == "auto" else ""))
    return rows


def lorenz_hvp_rows(repeats: int) -> list[dict]:
    """HVP / gradient on Lorenz with 1000 save points, per second-order route."""
    system = ol.gallery.lorenz()
    params = {k: jnp.asarray(v) for k, v in system.params.items()}
    vec = {k: jnp.asarray(1.0) for k in params}

    def loss(p):
        ys = ol.solve(system, params=p, t_span=(0.0, 20.0), saveat=1000, rtol=1e-6, atol=1e-8,
                      solver="tsit5").ys
        return jnp.mean(ys**2)

    routes = ("auto", "checkpoint", "interpolating", "forward", "direct")
    fns = {"gradient": jax.jit(lambda p: ol.gradient(loss, p))}
    fns.update({m: jax.jit(lambda p, m=m: ol.hvp(loss, p, vec, m)) for m in routes})
    t = _side_by_side(fns, params, repeats=repeats)
    return [_ratio_row("lorenz (1000 saves)", "HVP / gradient (auto)", m, t[m], t["gradient"])
            for m in routes]


def hessian_rows(repeats: int) -> list[dict]:
    def f(t, y, p):
        return jnp.tanh(p["A"] @ y) + p["b"] - 0.5 * y

    rng = np.random.default_rng(0)
    params = {"A": jnp.asarray(0.5 * rng.standard_normal((4, 4))), "b": jnp.asarray(
        0.1 * rng.standard_normal(4))}
    system = ol.System(f, 4, params=params, y0=np.ones(4), t_span=(0.0, 5.0), name="tanh4")

    def loss(p):
        sol = ol.solve(system, params=p, saveat=50, rtol=1e-8, atol=1e-10, solver="tsit5")
        return jnp.mean(sol.ys**2)

    routes = ("auto", "checkpoint", "forward", "direct")
    fns = {"gradient": jax.jit(lambda p: ol.gradient(loss, p))}
    fns.update({m: jax.jit(lambda p, m=m: ol.hessian(loss, p, m)) for m in routes})
    t = _side_by_side(fns, params, repeats=repeats)
    return [_ratio_row("tanh network, 20 params", "dense Hessian / gradient (auto)", m, t[m],
                       t["gradient"]) for m in routes]


def memory_rows(methods: list[str], steps: int = 100_000) -> list[dict]:
    system = ol.gallery.harmonic_oscillator()
    params = {k: jnp.asarray(v) for k, v in system.params.items()}
    t1 = 100.0
    dt = t1 / steps

    def loss(p, method=None):
        ys = ol.solve(system, params=p, t_span=(0.0, t1), saveat=100, dt=dt, solver="tsit5",
                      max_steps=steps + 10, method=method).ys
        return jnp.mean(ys**2)

    def temp_bytes(fn):
        stats = jax.jit(fn).lower(params).compile().memory_analysis()
        return float(stats.temp_size_in_bytes + stats.output_size_in_bytes)

    base = temp_bytes(loss)
    rows = [_ratio_row(f"{steps // 1000}k steps", "memory: solve", "-", base, base, "bytes")]
    for m in methods:
        b = temp_bytes(lambda p, m=m: ol.gradient(loss, p, m))
        rows.append(_ratio_row(f"{steps // 1000}k steps", "memory: gradient / solve", m, b, base,
                               "bytes; target ≤ 3" if m == "auto" else "bytes"))
    return rows


def interpolating_rows(repeats: int) -> list[dict]:
    """The interpolating adjoint on Lorenz with 1000 save points, measured side by side with
    the solve: gradient / solve (whole interpolant and checkpointed) and HVP / gradient, the
    HVP (forward over the adjoint) against the same method's gradient and against `auto`'s."""
    system = ol.gallery.lorenz()
    params = {k: jnp.asarray(v) for k, v in system.params.items()}
    vec = {k: jnp.asarray(1.0) for k in params}

    def loss(p, method=None):
        ys = ol.solve(system, params=p, t_span=(0.0, 20.0), saveat=1000, rtol=1e-6, atol=1e-8,
                      solver="tsit5", method=method).ys
        return jnp.mean(ys**2)

    k = 64
    segmented = ol.methods.Interpolating(checkpoints=k)
    fns = {
        "solve": jax.jit(loss),
        "auto": jax.jit(lambda p: ol.gradient(loss, p)),
        "interpolating": jax.jit(lambda p: ol.gradient(loss, p, "interpolating")),
        "segmented": jax.jit(lambda p: ol.gradient(loss, p, segmented)),
        "hvp": jax.jit(lambda p: ol.hvp(loss, p, vec, "interpolating")),
        "hvp segmented": jax.jit(lambda p: ol.hvp(loss, p, vec, segmented)),
    }
    t = _side_by_side(fns, params, repeats=repeats)
    name = "lorenz (1000 saves)"
    seg = f"interpolating(checkpoints={k})"
    return [
        _ratio_row(name, "solve", "-", t["solve"], t["solve"]),
        _ratio_row(name, "gradient / solve", "interpolating", t["interpolating"], t["solve"],
                   "target ≤ 6"),
        _ratio_row(name, "gradient / solve", seg, t["segmented"], t["solve"]),
        _ratio_row(name, "HVP / gradient (same method)", "interpolating", t["hvp"],
                   t["interpolating"], "target ≤ 4"),
        _ratio_row(name, "HVP / gradient (same method)", seg, t["hvp segmented"],
                   t["segmented"]),
        _ratio_row(name, "HVP / gradient (auto)", "interpolating", t["hvp"], t["auto"]),
    ]


def interpolant_memory_rows(max_steps: int = 100_000) -> list[dict]:
    """An adaptive solve allowed `max_steps` steps: the interpolating adjoint keeping the whole
    interpolant against keeping one of k = √max_steps segments at a time
    (Interpolating(checkpoints=k)), at max_steps and at a tenth of it: the whole interpolant
    grows like max_steps, the checkpointed adjoint like √max_steps (k checkpoints and one
    segment of max_steps/k steps; no buffer sized by max_steps)."""
    system = ol.gallery.lorenz()
    params = {k: jnp.asarray(v) for k, v in system.params.items()}

    def temp_bytes(fn):
        stats = jax.jit(fn).lower(params).compile().memory_analysis()
        return float(stats.temp_size_in_bytes + stats.output_size_in_bytes)

    rows = []
    for n in (max_steps // 10, max_steps):
        def loss(p, method=None, n=n):
            ys = ol.solve(system, params=p, saveat=100, rtol=1e-8, atol=1e-8, solver="tsit5",
                          max_steps=n, method=method).ys
            return jnp.mean(ys**2)

        name = f"Lorenz, adaptive, max_steps {n // 1000}k"
        base = temp_bytes(loss)
        rows.append(_ratio_row(name, "memory: solve", "-", base, base, "bytes"))
        k = int(n**0.5)
        for label, m in (("interpolating", "interpolating"),
                         (f"interpolating(checkpoints={k})", ol.methods.Interpolating(k))):
            b = temp_bytes(lambda p, m=m, loss=loss: ol.gradient(loss, p, m))
            rows.append(_ratio_row(name, "memory: gradient / solve", label, b, base, "bytes"))
    return rows


def network_memory_rows(steps: int) -> list[dict]:
    """Many parameters through many steps: memory and time of a gradient against the solve,
    for `auto` (checkpoint, one checkpoint per step: fastest), `auto` within a memory budget of
    3× and 6× the solve's compiled memory (checkpoint with the checkpoints that fit),
    checkpoint with 32 checkpoints (binomial schedule: less memory, more recomputation) and
    backsolve (constant memory)."""
    system, mlp, n = _mlp_system(16, 2, seed=2)
    diff, static = eqx.partition(mlp, eqx.is_inexact_array)
    t1 = 10.0

    def loss(d, method=None):
        ys = ol.solve(system, params=eqx.combine(d, static), t_span=(0.0, t1), saveat=100,
                      dt=t1 / steps, solver="tsit5", max_steps=steps + 10, method=method).ys
        return jnp.mean(ys**2)

    def measured(fn):
        compiled = jax.jit(fn).lower(diff).compile()
        stats = compiled.memory_analysis()
        seconds = _median_seconds(compiled, diff, repeats=1)
        return float(stats.temp_size_in_bytes + stats.output_size_in_bytes), seconds

    name = f"neural ODE ({n} params), {steps // 1000}k steps"
    base_bytes, base_s = measured(loss)
    rows = [_ratio_row(name, "memory: solve", "-", base_bytes, base_bytes, "bytes")]
    budgeted = "auto, budget 3× solve"
    for label, m, budget_ in (("auto", "auto", None), (budgeted, "auto", 3 * base_bytes),
                              ("auto, budget 6× solve", "auto", 6 * base_bytes),
                              ("checkpoint(32)", ol.methods.Checkpoint(32), None),
                              ("backsolve", "backsolve", None)):
        b, s_ = measured(lambda d, m=m, budget_=budget_: ol.gradient(loss, d, m,
                                                                   memory_budget=budget_))
        target = label == budgeted
        rows.append(_ratio_row(name, "memory: gradient / solve", label, b, base_bytes,
                               "bytes; target ≤ 3" if target else "bytes"))
        rows.append(_ratio_row(name, "time: gradient / solve", label, s_, base_s,
                               "target ≤ 6" if target else ""))
    return rows


def run(quick: bool = False) -> list[dict]:
    """Every measurement, as a list of rows (problem, what, method, seconds, ratio, note)."""
    repeats = 5 if quick else 30
    lorenz_methods = ["auto", "checkpoint", "interpolating", "forward-sensitivity", "forward",
                      "backsolve"] + ([] if quick else ["direct"])
    parts = [
        lambda: lorenz_rows(repeats, lorenz_methods),
        lambda: neural_rows(repeats, ["auto", "checkpoint", "interpolating"]),
        lambda: hvp_rows(repeats),
        lambda: lorenz_hvp_rows(repeats),
        lambda: interpolating_rows(repeats),
        lambda: hessian_rows(repeats),
        lambda: memory_rows(["auto", "checkpoint", "interpolating", "forward-sensitivity",
                             "backsolve"]),
        lambda: interpolant_memory_rows(20_000 if quick else 100_000),
        lambda: network_memory_rows(20_000 if quick else 100_000),
    ]
    rows: list[dict] = []
    for part in parts:
        new = part()
        print(markdown(new), file=sys.stderr, flush=True)  # progress: each part as it finishes
        rows += new
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| problem | what | method | seconds (or bytes) | ratio | note |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['problem']} | {r['what']} | {r['method']} | {r['seconds']:.4g} | "
                     f"{r['ratio']:.3g} | {r['note']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv)))
