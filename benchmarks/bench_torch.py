"""odelab vs torchdiffeq on the same neural ODE, measured side by side in one process.

Both sides integrate y' = MLP(y), an MLP 2→64→64→2 with tanh, with the SAME weights (copied from
the equinox MLP into torch), Dormand–Prince 5(4) ("dopri5"), rtol 1e-6, atol 1e-8, float64, on the
CPU, over t in [0, 1] with 100 save points. The loss is the mean squared trajectory. Cases: one
trajectory, and a batch of 256 initial states (odelab: `ol.solve` under `jax.vmap`, each member
with its own steps; torchdiffeq: one batched state, so the whole batch shares its steps).

Rows: forward solve and gradient times (medians over repeats after a warm-up, the sides
alternating so machine load hits both alike), odelab / torchdiffeq ratios (below 1: odelab is
faster) against `odeint` (backpropagation through the solver) and `odeint_adjoint` (the
continuous adjoint), and the largest difference between the two sides' trajectories and
gradients. Needs `pip install torch==2.13.0 torchdiffeq` (the `bench` extra).

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
from odelab._fields import vmap_solves

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


def _alternate(fns: dict, repeats: int) -> dict:
    for fn in fns.values():
        fn()  # warm-up: JAX traces and compiles; torch allocates
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def _leaves(mlp) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(mlp, eqx.is_array))]


def _odelab_side(system, batched: bool):
    """Jitted forward and gradient functions of (mlp, y0) for one case."""

    def trajectory(p, y0):
        return ol.solve(system, y0=y0, params=p, **SOLVE).ys

    if batched:
        one = trajectory

        def trajectory(p, y0s):
            # jax.vmap that hands the solves' statuses on to ol.gradient (a bare jax.vmap of
            # ol.solve inside ol.gradient leaks a tracer today)
            return vmap_solves(lambda y0: one(p, y0), y0s)

    def loss(p, y0):
        return jnp.mean(trajectory(p, y0) ** 2)

    forward = eqx.filter_jit(trajectory)
    gradients = {m: eqx.filter_jit(lambda p, y0, m=m: ol.gradient(lambda q: loss(q, y0), p, m))
                 for m in ("auto", "backsolve")}
    steps = eqx.filter_jit(
        lambda p, y0: jnp.max(jax.vmap(lambda y: ol.solve(system, y0=y, params=p, **SOLVE)
                                       .num_steps)(jnp.atleast_2d(y0)))
    )
    return forward, gradients, steps


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


def _case(name: str, system, mlp, y0: np.ndarray, field: TorchField, repeats: int) -> list[dict]:
    batched = y0.ndim == 2
    ts = torch.linspace(0.0, 1.0, N_SAVE, dtype=torch.float64)
    y0_jax, y0_torch = jnp.asarray(y0), torch.from_numpy(y0)
    ol_forward, ol_gradients, ol_steps = _odelab_side(system, batched)
    th_forward, th_gradient = _torch_side(field, ts)

    # The two sides solve the same problem: compare trajectories (odelab's ys are (batch,) time,
    # state; torchdiffeq's are time, (batch,) state) and gradients.
    ys_ol = np.asarray(ol_forward(mlp, y0_jax))
    ys_th = th_forward(y0_torch).numpy()
    if batched:
        ys_th = np.moveaxis(ys_th, 0, 1)
    dy = float(np.max(np.abs(ys_ol - ys_th)))
    field.evaluations = 0
    th_forward(y0_torch)
    torch_evals = field.evaluations
    grad_ol = _leaves(ol_gradients["auto"](mlp, y0_jax))
    grad_th = th_gradient(y0_torch, torchdiffeq.odeint)
    grad_adj = th_gradient(y0_torch, torchdiffeq.odeint_adjoint)
    scale = max(float(np.max(np.abs(g))) for g in grad_th)

    def gdiff(grads):
        return max(float(np.max(np.abs(a - b))) for a, b in zip(grads, grad_th)) / scale

    dg, dg_adj = gdiff(grad_ol), gdiff(grad_adj)
    if dy > AGREE or dg > AGREE:
        raise RuntimeError(f"{name}: odelab and torchdiffeq disagree (trajectories by {dy:.2g}, "
                           f"gradients by {dg:.2g} relative); the comparison would be unfair.")
    steps = f"odelab {int(ol_steps(mlp, y0_jax))} steps, torchdiffeq {torch_evals} evaluations"

    fwd = _alternate({"odelab": lambda: jax.block_until_ready(ol_forward(mlp, y0_jax)),
                      "odeint": lambda: th_forward(y0_torch)}, repeats)
    grad = _alternate({
        "odelab auto": lambda: jax.block_until_ready(ol_gradients["auto"](mlp, y0_jax)),
        "odelab backsolve": lambda: jax.block_until_ready(ol_gradients["backsolve"](mlp, y0_jax)),
        "odeint": lambda: th_gradient(y0_torch, torchdiffeq.odeint),
        "odeint_adjoint": lambda: th_gradient(y0_torch, torchdiffeq.odeint_adjoint),
    }, repeats)

    def row(what, odelab_s, odeint_s, adjoint_s, diff, note):
        return {"case": name, "what": what, "odelab s": odelab_s, "odeint s": odeint_s,
                "odelab / odeint": odelab_s / odeint_s, "odeint_adjoint s": adjoint_s,
                "odelab / odeint_adjoint": odelab_s / adjoint_s if adjoint_s else "",
                "max difference": diff, "note": note}

    return [
        row("forward solve", fwd["odelab"], fwd["odeint"], "", dy,
            f"max |y_odelab - y_torch|; {steps}"),
        row("gradient (auto)", grad["odelab auto"], grad["odeint"], grad["odeint_adjoint"], dg,
            "max |g_odelab - g_odeint| / max |g|; odeint_adjoint vs odeint: "
            f"{dg_adj:.2g}"),
        row("gradient (backsolve)", grad["odelab backsolve"], grad["odeint"],
            grad["odeint_adjoint"], "", "continuous adjoint on both sides (vs odeint_adjoint)"),
    ]


def run(quick: bool = False) -> list[dict]:
    repeats = 3 if quick else 15
    system = ol.gallery.neural_ode(key=jax.random.key(0), width=64, depth=2)
    mlp = system.params
    field = TorchField(mlp)
    rng = np.random.default_rng(0)
    single = np.array([1.0, 0.0])
    batch = rng.normal(size=(BATCH, 2))
    rows = _case("1 trajectory", system, mlp, single, field, repeats)
    rows += _case(f"batch of {BATCH}", system, mlp, batch, field, repeats)
    for r in rows:
        r["note"] += f"; torch threads {torch.get_num_threads()}"
    return rows


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r)
