"""The method of steps for delay equations, built on diffrax.

A delay equation y'(t) = f(t, y(t), y(t - τ_1), ..., y(t - τ_m), p) is integrated interval by
interval. The intervals end at the breakpoints where the solution loses smoothness
(t0 + Σ k_j τ_j, up to a tracked discontinuity order) and at every multiple of the smallest delay,
so that on each interval the delayed states come from intervals already solved. Each interval is
one diffrax solve with dense output; the dense outputs are stacked into a `History` that the next
intervals read. The number of intervals is static (fixed when tracing); their end points are
traced, so delays that are parameters move the breakpoints without recompiling.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

# Which side of a breakpoint a lookup reads is decided at a point moved this far (relative to
# 1 + |t|) towards the middle of the interval being solved; float rounding of t - τ is far below.
SIDE_NUDGE = 1e-11


# --------------------------------------------------------------------------------------------
# the grid of interval end points
# --------------------------------------------------------------------------------------------
def breakpoint_combinations(n_delays: int, order: int, smallest: int) -> np.ndarray:
    """Integer vectors k (one entry per delay) with 1 ≤ Σk ≤ order, for breakpoints t0 + k·τ.

    Multiples of the smallest delay alone are left out: the uniform grid holds them already.
    """
    combos = [
        k for k in itertools.product(range(order + 1), repeat=n_delays)
        if 1 <= sum(k) <= order and not (sum(k) == k[smallest])
    ]
    return np.asarray(combos, dtype=np.int64).reshape(len(combos), n_delays)


def uniform_count(t_span: tuple[float, float], smallest_delay: float) -> int:
    """How many multiples of the smallest delay it takes to cover `t_span`."""
    t0, t1 = t_span
    return max(1, math.ceil((t1 - t0) / smallest_delay * (1 + 1e-12)))


def build_grid(t0, t1, taus, combos: np.ndarray, n_uniform: int):
    """Sorted interval end points from t0 to t1 (traced values, static count), and whether the
    multiples of the smallest delay reach t1 (false when traced delays shrank below the values
    the count was sized with)."""
    tau_min = jnp.min(taus)
    uniform = t0 + tau_min * jnp.arange(1, n_uniform + 1, dtype=taus.dtype)
    points = [uniform]
    if combos.shape[0]:
        points.append(t0 + jnp.asarray(combos, dtype=taus.dtype) @ taus)
    inner = jnp.clip(jnp.concatenate(points), t0, t1)
    grid = jnp.concatenate([jnp.reshape(t0, (1,)), jnp.sort(inner), jnp.reshape(t1, (1,))])
    covered = t0 + n_uniform * tau_min >= t1 - 1e-12 * (1 + jnp.abs(t1))
    return grid, covered


def nudged(s, side):
    """s moved a hair to one side (side = ±1, or 0 to stay): the point that decides which
    interval a lookup at s reads, so that breakpoints hit exactly are read from that side."""
    return s + side * SIDE_NUDGE * (1 + jnp.abs(s))


def side_key(s, t, mid):
    """The deciding point for a lookup at s made at time t of the interval whose middle is mid:
    the side that interval sees."""
    return nudged(s, jnp.sign(mid - t))


# --------------------------------------------------------------------------------------------
# the stored dense solution
# --------------------------------------------------------------------------------------------
class History(eqx.Module):
    """Dense outputs of all intervals stacked along a leading axis, with the grid they cover.

    `ts`, `ts_size`, `direction` and `infos` are the fields of diffrax's DenseInterpolation,
    one row per interval; rows of zero-length intervals are never read.
    """

    grid: jax.Array  # (n_intervals + 1,)
    ts: jax.Array  # (n_intervals, max_steps + 1)
    ts_size: jax.Array  # (n_intervals,)
    direction: jax.Array  # (n_intervals,)
    infos: Any  # pytree of (n_intervals, max_steps, ...)
    interpolation_cls: Callable = eqx.field(static=True)

    @staticmethod
    def empty(grid: jax.Array, interpolation: Any) -> History:
        """Zero rows shaped like `interpolation`, one per interval."""
        n = grid.shape[0] - 1
        zeros = lambda x: jnp.zeros((n,) + tuple(x.shape), x.dtype)
        return History(
            grid=grid, ts=zeros(interpolation.ts), ts_size=zeros(interpolation.ts_size),
            direction=zeros(interpolation.direction),
            infos=jax.tree_util.tree_map(zeros, interpolation.infos),
            interpolation_cls=interpolation.interpolation_cls,
        )

    def store(self, k, interpolation: diffrax.DenseInterpolation) -> History:
        """This history with interval k's dense output written in."""
        put = lambda rows, x: rows.at[k].set(x)
        return eqx.tree_at(
            lambda h: (h.ts, h.ts_size, h.direction, h.infos), self,
            (put(self.ts, interpolation.ts), put(self.ts_size, interpolation.ts_size),
             put(self.direction, interpolation.direction),
             jax.tree_util.tree_map(put, self.infos, interpolation.infos)),
        )

    def interval_of(self, key):
        """The index of the non-empty interval that contains `key` (clamped to the grid)."""
        grid = self.grid
        last = jnp.searchsorted(grid, grid[-1], side="left") - 1  # the last non-empty interval
        idx = jnp.searchsorted(grid, key, side="right") - 1
        return jnp.clip(idx, 0, jnp.maximum(last, 0))

    def evaluate(self, s, key=None):
        """The stored solution at time s, read from the interval containing `key` (default s).

        Only the one step's coefficients are gathered, not the interval's whole row.
        """
        idx = self.interval_of(s if key is None else key)
        direction = self.direction[idx]
        row = self.ts[idx]
        tt = s * direction
        step = jnp.clip(jnp.searchsorted(row, tt, side="left") - 1, 0, self.ts_size[idx] - 2)
        infos = jax.tree_util.tree_map(lambda x: x[idx, step], self.infos)
        local = self.interpolation_cls(t0=row[step], t1=row[step + 1], **infos)
        return local.evaluate(tt)


# --------------------------------------------------------------------------------------------
# what a vector field on one interval needs to read delayed states
# --------------------------------------------------------------------------------------------
class Past(eqx.Module):
    """The history before t0 and the stored solution after it: what delayed lookups read.

    A pytree (passed to diffrax as `args`), so gradients reach the parameters, the history and
    the stored solution through it.
    """

    t0: jax.Array
    stored: History | None
    params: Any
    history_value: jax.Array  # the constant history (unused when history_fn is given)
    history_fn: Callable | None = eqx.field(static=True)  # history_fn(s, params) -> (n,)

    def history(self, s):
        if self.history_fn is None:
            return self.history_value
        return jnp.broadcast_to(self.history_fn(s, self.params), self.history_value.shape)

    def at(self, s, key):
        """y(s), choosing history or stored solution (and which interval) by `key`."""
        before = key < self.t0
        # each branch is evaluated where it is valid, so neither feeds NaNs into gradients; the
        # clamps are `where`s, not min/max, which would halve the derivative at s == t0
        from_history = self.history(jnp.where(before, s, self.t0))
        from_solution = self.stored.evaluate(jnp.where(before, self.t0, s),
                                             jnp.where(before, self.t0, key))
        return jnp.where(before, from_history, from_solution)

    def delayed(self, taus, t, mid):
        """The delayed states y(t - τ_j), shape (n_delays, n_states)."""
        def one(tau):
            s = t - tau
            return self.at(s, side_key(s, t, mid))

        return jax.vmap(one)(taus)


def delay_field(f: Callable) -> Callable:
    """The vector field as diffrax sees it: args = (past, taus, middle of the interval)."""

    def field(t, y, args):
        past, taus, mid = args
        return f(t, y, past.delayed(taus, t, mid), past.params)

    return field


# --------------------------------------------------------------------------------------------
# the forward sweep over the intervals
# --------------------------------------------------------------------------------------------
class Stepper(eqx.Module):
    """How each interval is integrated: solver, step control, step budget."""

    solver: diffrax.AbstractSolver
    max_steps: int = eqx.field(static=True)
    fixed_steps: bool = eqx.field(static=True)
    rtol: jax.Array
    atol: jax.Array
    dt: jax.Array

    def solve(self, field, a, b, y_a, args, adjoint, saveat=None):
        if self.fixed_steps:  # the sign follows the direction (adjoint solves run backward)
            controller, dt0 = diffrax.ConstantStepSize(), jnp.where(b >= a, self.dt, -self.dt)
        else:
            controller, dt0 = diffrax.PIDController(rtol=self.rtol, atol=self.atol), None
        return diffrax.diffeqsolve(
            diffrax.ODETerm(field), self.solver, t0=a, t1=b, dt0=dt0, y0=y_a, args=args,
            saveat=saveat or diffrax.SaveAt(t1=True, dense=True), stepsize_controller=controller,
            adjoint=adjoint, max_steps=self.max_steps, throw=False,
        )


class Sweep(NamedTuple):
    """The forward sweep's result: the dense solution and the status of the intervals."""

    stored: History
    y_end: jax.Array
    result: jax.Array  # the first non-zero diffrax result code, else 0
    t_failed: jax.Array  # start of the first failed interval (t1 when none failed)
    y_failed: jax.Array
    num_steps: jax.Array
    num_accepted: jax.Array
    num_rejected: jax.Array


_SHAPES: dict = {}  # dense-output shapes per (solver, step budget, state layout): tracing is slow


def empty_history(stepper: Stepper, grid, y0, keep: Callable | None = None) -> History:
    """Zero rows shaped like one interval's dense output (learned from an abstract solve).

    `keep` maps a dense output's `infos` to the part worth storing (default: all of it).
    """
    leaves, tree = jax.tree_util.tree_flatten(y0)
    key = (type(stepper.solver), stepper.max_steps, stepper.fixed_steps, tree, keep is None,
           tuple((x.shape, str(x.dtype)) for x in leaves))

    def one():
        interp = stepper.solve(lambda t, y, args: y, grid[0], grid[1], y0, None,
                               diffrax.RecursiveCheckpointAdjoint()).interpolation
        return interp if keep is None else eqx.tree_at(lambda i: i.infos, interp,
                                                        keep(interp.infos))

    if key not in _SHAPES:
        _SHAPES[key] = jax.eval_shape(one)
    return History.empty(grid, _SHAPES[key])


def interval_bytes(solver: diffrax.AbstractSolver, max_steps: int, fixed_steps: bool,
                   y0: jax.Array) -> int:
    """The memory one interval's stored dense output takes (its row of the `History`)."""
    one = jnp.asarray(1.0, y0.dtype)
    stepper = Stepper(solver, max_steps, fixed_steps, one, one, one)
    row = empty_history(stepper, jnp.stack([0 * one, one]), y0)
    leaves = jax.tree_util.tree_leaves((row.ts, row.ts_size, row.direction, row.infos))
    return int(sum(x.size * x.dtype.itemsize for x in leaves))


def moved_breakpoint(field, past: Past, taus, grid, k, y_a):
    """Zero, with the derivatives that moving breakpoint k gives the state entering interval k.

    Each interval is solved between fixed (gradient-stopped) end points: where the breakpoints
    sit changes the exact solution not at all, only where the field jumps does. When grid point
    g moves to g + δ, the state entering the interval after it (solved from g with f⁺) must
    absorb the stretch [g, g + δ] that the true solution spends under f⁻ (f∓ the fields of the
    intervals before and after g; f⁻ = 0 at t0):

        Δy = ∫_g^{g+δ} f⁻(t, y⁻(t)) − f⁺(t, y⁺(t)) dt,

    y⁻ the state arriving under f⁻ and y⁺ the solution of the next interval continued back.
    The midpoint rule makes it exact to second order in δ (first and second derivatives with
    respect to the delays and t0): the difference of the fields changes along the stretch
    (e.g. the delayed state read by f⁺ moves along the previous interval's solution), which is
    the δ²/2 term a first-order δ·(f⁻ − f⁺)(g) would miss. The fields differ where a delayed
    state leaves the history with y0 ≠ history(t0), and, in their slopes, at later breakpoints;
    elsewhere this term is zero, so first derivatives in the delays come from the delayed
    arguments t − τ alone. It also keeps second derivatives away from diffrax's handling of
    end points, which has no second-order rule.
    """
    a = grid[k]
    a_fixed = jax.lax.stop_gradient(a)
    delta = a - a_fixed
    here = 0.5 * (a_fixed + jax.lax.stop_gradient(grid[k + 1]))
    before = 0.5 * (jax.lax.stop_gradient(grid[jnp.maximum(k - 1, 0)]) + a_fixed)
    inside = k > 0
    f_before = jnp.where(inside, field(a_fixed, y_a, (past, taus, before)), 0.0)
    f_after = field(a_fixed, y_a, (past, taus, here))
    # the states at the middle of the stretch: y⁻ from y_a along f⁻; y⁺ back from the state
    # both reach at g + δ, y_a + δ f⁻, along f⁺
    middle = a_fixed + 0.5 * delta
    y_before = y_a + 0.5 * delta * f_before
    y_after = y_a + delta * f_before - 0.5 * delta * f_after
    g_before = jnp.where(inside, field(middle, y_before, (past, taus, before)), 0.0)
    g_after = field(middle, y_after, (past, taus, here))
    return delta * (g_before - g_after)


def moved_end(field, y_end, t1, args):
    """The final state moved along the field when the end time t1 moves (midpoint rule, exact to
    second order, like `moved_breakpoint`); the value is y_end itself."""
    t1_fixed = jax.lax.stop_gradient(t1)
    delta = t1 - t1_fixed
    slope = field(t1_fixed, y_end, args)
    return y_end + delta * field(t1_fixed + 0.5 * delta, y_end + 0.5 * delta * slope, args)


def sweep(f: Callable, stepper: Stepper, past: Past, taus, y0, adjoint) -> Sweep:
    """Solve interval after interval, each reading the delayed states of those before it."""
    grid = past.stored.grid
    field = delay_field(f)
    zero = jnp.zeros((), dtype=jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)

    def body(carry, k):
        y_a, stored, result, t_failed, y_failed, steps, acc, rej = carry
        a, b = grid[k], grid[k + 1]
        here = dataclasses.replace(past, stored=stored)
        a_fixed, b_fixed = jax.lax.stop_gradient(a), jax.lax.stop_gradient(b)
        args = (here, taus, 0.5 * (a_fixed + b_fixed))
        y_start = y_a + moved_breakpoint(field, here, taus, grid, k, y_a)
        out = stepper.solve(field, a_fixed, b_fixed, y_start, args, adjoint)
        code = out.result._value
        first = (result == 0) & (code != 0)
        carry = (
            out.ys[-1],
            stored.store(k, out.interpolation),
            jnp.where(result == 0, code, result),
            jnp.where(first, a, t_failed),
            jnp.where(first, y_a, y_failed),
            steps + out.stats["num_steps"],
            acc + out.stats["num_accepted_steps"],
            rej + out.stats["num_rejected_steps"],
        )
        return carry, None

    init = (y0, past.stored, zero, grid[-1], y0, zero, zero, zero)
    (y_end, stored, result, t_failed, y_failed, steps, acc, rej), _ = jax.lax.scan(
        body, init, jnp.arange(grid.shape[0] - 1)
    )
    # the end time moves the final state along the field (solves ran with fixed end points)
    t1 = grid[-1]
    end_args = (dataclasses.replace(past, stored=stored), taus, jax.lax.stop_gradient(t1) - 1.0)
    y_end = moved_end(field, y_end, t1, end_args)
    return Sweep(stored, y_end, result, t_failed, y_failed, steps, acc, rej)
