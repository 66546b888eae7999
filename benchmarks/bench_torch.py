"""odelab vs torchdiffeq on the same neural ODE, measured side by side in one process.

Both sides integrate y' = MLP(y), an MLP 2→64→64→2 with tanh, with the SAME weights (copied from
the equinox MLP into torch), Dormand–Prince 5(4) ("dopri5"), rtol 1e-6, atol 1e-8, float64, on the
CPU, over t in [0, 1] with 100 save points. The loss is the mean squared trajectory. Cases: one
trajectory, and a batch of 256 initial states. torchdiffeq integrates a batch as one state whose
members share their steps; odelab is timed both ways: "vmap" (`ol.solve` vmapped over y0, each
member with its own steps and its own adjoint) and "solve_ensemble" (`ol.solve_ensemble` over
y0 with the network as shared `params`, in the layout odelab picks: here "shared", the batch
stacked into one state of 512 components with one step size, as torchdiffeq does, but each
member's error held to the tolerances).

Rows: forward solve and gradient times (medians over repeats after a warm-up, the sides
alternating so machine load hits both alike), odelab / torchdiffeq ratios (below 1: odelab is
faster) against `odeint` (backpropagation through the solver) and `odeint_adjoint` (the
continuous adjoint), and the largest difference between the two sides' trajectories and
gradients. With these weights the field is smooth (a handful of steps over [0, 1]), so the times
are mostly each library's per-step and per-call overhead. `quick` uses a batch of 32 and 3
repeats. Needs `pip install torch==2.13.0 torchdiffeq` (the `bench` extra).

    python benchmarks/bench_torch.py --quick
"""

from __future__ import annotations

import statistics
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torchdiffeq

import odelab as ol
from odelab.analysis.fields import vmap_solves

RTOL, ATOL = 1e-6, 1e-8
N_SAVE = 100
BATCH = 256
SOLVE = dict(saveat=N_SAVE, solver="dopri5", rtol=RTOL, atol=ATOL)
# The two sides take different step sequences (the same method and tolerances, different step
# size controllers), so they agree to about the tolerance, not to rounding. A difference far
# above it means they are not solving the same problem.
AGREE = 1e-4


class TorchField(torch.nn.Module):
    """The equinox MLP's twin: y' = W3 tanh(W2 tanh(W1 y + b1) + b2) + b3; counts evaluations."""

    def __init__(self, mlp: eqx.nn.MLP):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(2, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
            torch.nn.Linear(64, 2),
        ).double()
        linears = [m for m in self.net if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            for theirs, ours in zip(linears, mlp.layers, strict=True):
                # equinox and torch both store weights as (out, in)
                theirs.weight.copy_(torch.tensor(np.array(ours.weight)))
                theirs.bias.copy_(torch.tensor(np.array(ours.bias)))
        self.evaluations = 0

    def forward(self, t, y):
        self.evaluations += 1
        return self.net(y)


def _alternate(fns: dict, repeats: int, budget: float) -> dict:
    """Median seconds of each function, called in turns (every function already ran once).

    Rounds stop after `repeats`, or once `budget` seconds have gone and 3 rounds are done: the
    slowest calls here take half a minute each.
    """
    times = {k: [] for k in fns}
    start = time.perf_counter()
    for done in range(1, repeats + 1):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        if done >= 3 and time.perf_counter() - start > budget:
            break
    return {k: statistics.median(v) for k, v in times.items()}


def _leaves(mlp) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(mlp, eqx.is_array))]


def _odelab_trajectories(system, how: str, batch: int):
    """ys as a function of (mlp, y0): ys (time, state), or (batch, time, state) for batches.

    how: "single"; "vmap" (each member its own solve and steps); "solve_ensemble" (odelab's
    batch, in the layout it picks: here one stacked state of 2 * batch components whose steps
    every member shares, each member's error held to the tolerances).
    """
    if how == "single":
        return lambda p, y0: ol.solve(system, y0=y0, params=p, **SOLVE).ys
    if how == "vmap":
        # odelab's vmap that hands the solves' statuses on to ol.gradient (a bare jax.vmap
        # computes the same, but failures of its solves are not reported)
        return lambda p, y0s: vmap_solves(
            lambda y0: ol.solve(system, y0=y0, params=p, **SOLVE).ys, y0s)
    # the form a user writes for a batch: its layout chosen by odelab ("auto": shared steps for
    # an explicit solver on one device, the batch stacked into one state as torchdiffeq does)
    return lambda p, y0s: ol.solve_ensemble(system, y0_batch=y0s, params=p, **SOLVE).ys


def _odelab_side(system, how: str, batch: int) -> dict:
    """Jitted functions of (mlp, y0): "forward" (the trajectories) and the loss's gradient by
    odelab's default method ("auto") and by the continuous adjoint ("backsolve")."""
    trajectory = _odelab_trajectories(system, how, batch)

    def loss(p, y0):
        return jnp.mean(trajectory(p, y0) ** 2)

    fns = {"forward": eqx.filter_jit(trajectory)}
    for m in ("auto", "backsolve"):
        fns[m] = eqx.filter_jit(lambda p, y0, m=m: ol.gradient(lambda q: loss(q, y0), p, m))
    return fns


def _odelab_steps(system, mlp, y0s) -> int:
    """The most steps any member takes when solved alone."""
    steps = eqx.filter_jit(jax.vmap(
        lambda y0: ol.solve(system, y0=y0, params=mlp, **SOLVE).num_steps))
    return int(jnp.max(steps(jnp.atleast_2d(y0s))))


def _torch_side(field: TorchField, ts: torch.Tensor):
    def forward(y0):
        with torch.no_grad():
            return torchdiffeq.odeint(field, y0, ts, rtol=RTOL, atol=ATOL, method="dopri5")

    def gradient(y0, solver):
        field.zero_grad()
        ys = solver(field, y0, ts, rtol=RTOL, atol=ATOL, method="dopri5")
        loss = torch.mean(ys**2)
        loss.backward()
        return [p.grad.detach().numpy().copy() for p in field.parameters()]

    return forward, gradient


def _max_relative(ours: list, theirs: list) -> float:
    scale = max(float(np.max(np.abs(b))) for b in theirs)
    return max(float(np.max(np.abs(a - b))) for a, b in zip(ours, theirs, strict=True)) / scale


def _case(name: str, system, mlp, y0: np.ndarray, field: TorchField, repeats: int,
          budget: float) -> list[dict]:
    batch = len(y0) if y0.ndim == 2 else 0
    ts = torch.linspace(0.0, 1.0, N_SAVE, dtype=torch.float64)
    y0_jax, y0_torch = jnp.asarray(y0), torch.from_numpy(y0)
    sides = ["vmap", "solve_ensemble"] if batch else ["single"]
    odelab_fns = {}
    for how in sides:
        suffix = f" ({how})" if batch else ""
        for what, fn in _odelab_side(system, how, batch).items():
            odelab_fns[what + suffix] = (
                lambda fn=fn: jax.block_until_ready(fn(mlp, y0_jax)))
    th_forward, th_gradient = _torch_side(field, ts)
    torch_fns = {
        "odeint forward": lambda: th_forward(y0_torch),
        "odeint": lambda: th_gradient(y0_torch, torchdiffeq.odeint),
        "odeint_adjoint": lambda: th_gradient(y0_torch, torchdiffeq.odeint_adjoint),
    }

    # Warm-up, and a check that both sides solve the same problem. odelab's ys are
    # ([batch,] time, state), torchdiffeq's (time, [batch,] state).
    field.evaluations = 0
    ys_th = torch_fns["odeint forward"]().numpy()
    torch_evaluations = field.evaluations
    if batch:
        ys_th = np.moveaxis(ys_th, 0, 1)
    grads_th = {k: torch_fns[k]() for k in ("odeint", "odeint_adjoint")}
    pairs = [(ours + suffix, theirs, note)
             for suffix in ([" (vmap)", " (solve_ensemble)"] if batch else [""])
             for (ours, theirs), note in zip(PAIRS, NOTES, strict=True)]
    diff = {}
    for ours, theirs, _ in pairs:
        out = odelab_fns[ours]()
        if theirs == "odeint forward":
            diff[ours, theirs] = float(np.max(np.abs(np.asarray(out) - ys_th)))
        else:
            diff[ours, theirs] = _max_relative(_leaves(out), grads_th[theirs])
    if max(diff.values()) > AGREE:
        raise RuntimeError(f"{name}: odelab and torchdiffeq disagree ({diff}): they are not "
                           "solving the same problem, so their times cannot be compared.")

    times = _alternate({**odelab_fns, **torch_fns}, repeats, budget)
    rows = []
    for ours, theirs, note in pairs:
        if ours == "auto (solve_ensemble)" and theirs == "odeint":
            note += "; target ≤ 0.5"  # issue 20: batched gradients at half torchdiffeq's time
        rows.append({
            "case": name, "odelab": ours, "odelab s": times[ours], "torchdiffeq": theirs,
            "torchdiffeq s": times[theirs], "odelab / torchdiffeq": times[ours] / times[theirs],
            "max difference": diff[ours, theirs], "note": note,
        })
    rows[0]["note"] += (f"; odelab {_odelab_steps(system, mlp, y0_jax)} steps (most for one "
                        f"member), torchdiffeq {torch_evaluations} evaluations of the field")
    return rows


# (odelab, torchdiffeq) pairs compared, and what each row means.
PAIRS = [("forward", "odeint forward"), ("auto", "odeint"), ("auto", "odeint_adjoint"),
         ("backsolve", "odeint_adjoint")]
NOTES = [
    "solve only; difference: max |y_odelab - y_torch|",
    "gradient; difference: max |g_odelab - g_torch| / max |g_torch|",
    "gradient; odelab's default against torchdiffeq's memory-saving adjoint",
    "gradient; a continuous adjoint on both sides",
]


def run(quick: bool = False) -> list[dict]:
    """Rows of odelab vs torchdiffeq; quick: a batch of 32 and 3 repeats (under 2 minutes)."""
    system = ol.gallery.neural_ode(key=jax.random.key(0), width=64, depth=2)
    mlp = system.params
    field = TorchField(mlp)
    batch = 32 if quick else BATCH
    repeats, budget = (3, 0.0) if quick else (15, 120.0)
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads()
    # One thread: on 2 shared cores torch's OpenMP pool waits for a busy core at every small
    # parallel op (batched gradients ran 10-80x slower, erratically); idle, one thread was as
    # fast as two at these sizes.
    torch.set_num_threads(1)
    try:
        rows = _case("1 trajectory", system, mlp, np.array([1.0, 0.0]), field, repeats, budget)
        rows += _case(f"batch of {batch}", system, mlp, rng.normal(size=(batch, 2)), field,
                      repeats, budget)
    finally:
        torch.set_num_threads(threads)
    rows[0]["note"] += "; torch on 1 thread"
    return rows


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r)
