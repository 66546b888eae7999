"""`method="delay-adjoint"`: the continuous adjoint of a delay equation, solved backward.

For y'(t) = f(t, y(t), y(t - τ_1), ..., y(t - τ_m), p) on [t0, T] with history φ(t, p) and a loss
on the saved states y(s_i) and the final state y(T), the adjoint λ (a row vector, zero after T)
solves the advanced-argument equation

    λ'(t) = -λ(t) ∂f/∂y(t) - Σ_j λ(t + τ_j) ∂f/∂y_j(t + τ_j) [t + τ_j < T]

backward from T, jumping by ∂L/∂y(s_i) at each save time. Then

    ∂L/∂y0 = λ(t0),
    ∂L/∂p  = ∫ λ ∂f/∂p dt + Σ_j ∫ λ ∂f/∂y_j φ_p(t - τ_j) [t - τ_j < t0] dt,
    ∂L/∂τ_j = -∫ λ ∂f/∂y_j y'(t - τ_j) dt + λ(t0 + τ_j) (f⁻ - f⁺)(t0 + τ_j),

the last term counting the jump of f where y(t - τ_j) leaves the history when y0 ≠ φ(t0).
The backward solve runs by the method of steps over the forward grid refined at the save times
and at T - τ_j; λ(t + τ_j) is read from the sub-intervals already solved, y from the forward
solution's dense output (kept from the forward pass: memory linear in the number of intervals).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import MethodNotApplicableError
from ..solve.gradient_method import Capabilities, GradientMethod
from ..solve.method_of_steps import (
    History,
    Past,
    Stepper,
    build_grid,
    empty_history,
    nudged,
    sweep,
)


class DelayAdjoint(GradientMethod):
    """The continuous (optimise-then-discretise) adjoint of a delay equation.

    For DelaySystems only. Memory grows with the number of intervals, not with the steps
    differentiated; the gradient approximates the continuous one to about the solver
    tolerance. First-order reverse mode only.
    """

    name = "delay-adjoint"
    applies_to = ("delay",)
    capabilities = Capabilities(
        reverse=True,
        forward=False,
        second_order=(),
        nested=False,
        exact=False,
        memory="O(intervals × steps × state) (the forward dense output)",
        cost="gradient ≈ 3–6 solves (1 + m vector-field VJPs per backward stage)",
        stiff="fine with a stiff solver for the backward solve as well",
        description="Continuous adjoint for DelaySystems: the advanced-argument adjoint "
        "equation solved backward by the method of steps.",
    )

    def adjoint(self, *, max_steps: int, state_size: int) -> diffrax.AbstractAdjoint:
        raise MethodNotApplicableError(
            "`method='delay-adjoint'` applies to ol.DelaySystem only. For an ordinary System use "
            "method='backsolve' (its continuous adjoint) or method='checkpoint'."
        )

    def integrate_delay(self, problem):
        return adjoint_solve(problem.f, problem.stepper, problem.past, problem.delay_values,
                             problem.delays, GridSpec(problem.combos, problem.n_uniform),
                             problem.y0, problem.ts, problem.t1)


class GridSpec(eqx.Module):
    """How the breakpoint grid is built (static), so it can be rebuilt from perturbed delays."""

    combos: tuple = eqx.field(static=True)
    n_uniform: int = eqx.field(static=True)

    def build(self, t0, t1, taus):
        combos = np.asarray(self.combos, dtype=np.int64).reshape(-1, taus.shape[0])
        return build_grid(t0, t1, taus, combos, self.n_uniform)[0]


def adjoint_solve(f: Callable, stepper: Stepper, past: Past, delay_values, delays: tuple,
                  grid_spec: GridSpec, y0, ts, t1):
    """(ys, y_end, sweep) of the forward solve, differentiated by the continuous adjoint.

    `delays` names, per delay, the parameter it is (None for a constant delay, whose value is
    in `delay_values`). `past.stored` is ignored: the grid and history are built inside, from
    the parameters (which the delays may be).
    """
    params = past.params
    past = Past(past.t0, None, None, past.history_value, past.history_fn)
    return _solve((params, y0, ts, t1), f, stepper, past, delay_values, delays, grid_spec)


def _forward(vjp_arg, f, stepper, past, taus, delays, grid_spec):
    params, y0, ts, t1 = vjp_arg
    past, taus = _with_params(past, taus, delays, params)
    grid = grid_spec.build(past.t0, t1, taus)
    past = dataclasses.replace(past, stored=empty_history(stepper, grid, y0))
    sw = sweep(f, stepper, past, taus, y0, diffrax.RecursiveCheckpointAdjoint())
    ys = jax.vmap(sw.stored.evaluate)(ts)
    return (ys, sw.y_end, sw)


def _with_params(past: Past, taus, delays, params):
    """The past and delays as functions of the (possibly perturbed) parameters."""
    past = dataclasses.replace(past, params=params)
    taus = jnp.stack([
        jnp.asarray(params[d], dtype=taus.dtype) if d is not None else taus[i]
        for i, d in enumerate(delays)
    ])
    return past, taus


@eqx.filter_custom_vjp
def _solve(vjp_arg, f, stepper, past, taus, delays, grid_spec):
    return _forward(vjp_arg, f, stepper, past, taus, delays, grid_spec)


@_solve.def_fwd
def _solve_fwd(perturbed, vjp_arg, f, stepper, past, taus, delays, grid_spec):
    out = _forward(vjp_arg, f, stepper, past, taus, delays, grid_spec)
    return out, out[2].stored


@_solve.def_bwd
def _solve_bwd(stored, grad_obj, perturbed, vjp_arg, f, stepper, past, taus, delays, grid_spec):
    params, y0, ts, t1 = vjp_arg
    past, taus = _with_params(past, taus, delays, params)
    fwd = dataclasses.replace(past, stored=stored)
    ys_bar, y_end_bar, _ = grad_obj
    n = y0.shape[0]
    ys_bar = jnp.zeros((ts.shape[0], n), y0.dtype) if ys_bar is None else ys_bar
    y_end_bar = jnp.zeros((n,), y0.dtype) if y_end_bar is None else y_end_bar
    return _backward(f, stepper, fwd, taus, delays, y0, ts, t1, ys_bar, y_end_bar)


# --------------------------------------------------------------------------------------------
# the backward pass
# --------------------------------------------------------------------------------------------
def _split(params):
    return eqx.partition(params, eqx.is_inexact_array)


class _Adjoint(eqx.Module):
    """What the adjoint vector field reads: the forward solution, λ solved so far, the delays."""

    fwd: Past
    lam: History
    taus: jax.Array
    t_end: jax.Array


def _lookups(fwd: Past, taus, t, side):
    """y(t) and the delayed states at t, breakpoints read from the side `side` points to."""
    nudge = lambda s: nudged(s, side)
    y = fwd.stored.evaluate(t, nudge(t))
    yd = jax.vmap(lambda tau: fwd.at(t - tau, nudge(t - tau)))(taus)
    return y, yd


def _adjoint_field(f: Callable):
    def field(t, state, args):
        adj, mid = args
        fwd, taus, t_end = adj.fwd, adj.taus, adj.t_end
        lam, gp, gtau = state
        diff, static = _split(fwd.params)
        side = jnp.sign(mid - t)
        nudge = lambda s: nudged(s, side)
        m = taus.shape[0]

        # λ ∂f/∂y, λ ∂f/∂y_j and λ ∂f/∂p at t
        y, yd = _lookups(fwd, taus, t, side)
        _, vjp = jax.vjp(lambda y_, yd_, d_: f(t, y_, yd_, eqx.combine(d_, static)), y, yd, diff)
        lam_fy, lam_fyd, lam_fp = vjp(lam)

        # λ(t + τ_j) ∂f/∂y_j(t + τ_j): the advanced terms, zero beyond the end
        def advanced(j):
            tt = t + taus[j]
            inside = nudge(tt) < t_end
            tc = jnp.minimum(tt, t_end)
            lam_j = adj.lam.evaluate(tc, jnp.minimum(nudge(tt), t_end))
            lam_j = jnp.where(inside, lam_j, 0.0)
            y_j, yd_j = _lookups(fwd, taus, tc, side)
            _, vjp_j = jax.vjp(lambda yd_: f(tc, y_j, yd_, fwd.params), yd_j)
            return vjp_j(lam_j)[0][j]

        dlam = -(lam_fy + jnp.sum(jax.vmap(advanced)(jnp.arange(m)), axis=0))

        # the history's parameters, where a delayed state still reads the history
        hist = jax.tree_util.tree_map(jnp.zeros_like, lam_fp)
        if fwd.history_fn is not None:
            def through_history(j):
                s = t - taus[j]
                before = nudge(s) < fwd.t0
                sh = jnp.minimum(s, fwd.t0)
                _, vjp_h = jax.vjp(
                    lambda d_: dataclasses.replace(fwd, params=eqx.combine(d_, static))
                    .history(sh), diff)
                (g,) = vjp_h(lam_fyd[j])
                return jax.tree_util.tree_map(lambda x: jnp.where(before, x, 0.0), g)

            parts = jax.vmap(through_history)(jnp.arange(m))
            hist = jax.tree_util.tree_map(lambda x: jnp.sum(x, axis=0), parts)
        dgp = jax.tree_util.tree_map(lambda a, b: -(a + b), lam_fp, hist)

        # the delays: y(t - τ_j) moves by -y'(t - τ_j) per unit of τ_j
        def delay_rate(j):
            s = t - taus[j]
            return jnp.dot(lam_fyd[j], _derivative(f, fwd, taus, s, nudge(s), side))

        dgtau = jax.vmap(delay_rate)(jnp.arange(m))
        return dlam, dgp, dgtau

    return field


def _derivative(f, fwd: Past, taus, s, key, side):
    """y'(s): the history's time derivative before t0, the vector field after."""
    before = key < fwd.t0
    sh = jnp.minimum(s, fwd.t0)
    _, d_history = jax.jvp(fwd.history, (sh,), (jnp.ones_like(sh),))
    sa = jnp.maximum(s, fwd.t0)
    y, yd = _lookups(fwd, taus, sa, side)
    d_solution = f(sa, y, yd, fwd.params)
    return jnp.where(before, d_history, d_solution)


def _backward(f, stepper: Stepper, fwd: Past, taus, delays, y0, ts, t1, ys_bar, y_end_bar):
    grid = fwd.stored.grid
    n, m = y0.shape[0], taus.shape[0]
    t0 = grid[0]
    # the backward grid: forward breakpoints, save times (where λ jumps), and where those jumps
    # and the cut-off at T reach λ' through the advanced terms (T - τ_j, s_i - τ_j)
    echoes = jnp.clip(jnp.concatenate([t1 - taus, (ts[:, None] - taus[None, :]).ravel()]), t0, t1)
    points = jnp.concatenate([grid, ts, echoes])
    jumps = jnp.concatenate([
        jnp.zeros((grid.shape[0] - 1, n), y0.dtype), y_end_bar[None], ys_bar,
        jnp.zeros((echoes.shape[0], n), y0.dtype),
    ])
    order = jnp.argsort(points, stable=True)
    agrid, jumps = points[order], jumps[order]

    diff, static = _split(fwd.params)
    zero_state = (jnp.zeros(n, y0.dtype), jax.tree_util.tree_map(jnp.zeros_like, diff),
                  jnp.zeros(m, y0.dtype))
    keep_lam = lambda infos: {k: v[0] for k, v in infos.items()}
    lam_hist = empty_history(stepper, agrid, zero_state, keep=keep_lam)
    field = _adjoint_field(f)
    adjoint = diffrax.RecursiveCheckpointAdjoint()

    def body(carry, k):
        state, lam_stored = carry
        a, b = agrid[k], agrid[k + 1]
        lam, gp, gtau = state
        state = (lam + jumps[k + 1], gp, gtau)  # λ just left of b
        args = (_Adjoint(fwd, lam_stored, taus, t1), 0.5 * (a + b))
        out = stepper.solve(field, b, a, state, args, adjoint)
        end = jax.tree_util.tree_map(lambda x: x[-1], out.ys)
        interp = out.interpolation
        interp = eqx.tree_at(lambda i: i.infos, interp, keep_lam(interp.infos))
        return (end, lam_stored.store(k, interp)), None

    steps = jnp.arange(agrid.shape[0] - 1)[::-1]
    (state, lam_stored), _ = jax.lax.scan(body, (zero_state, lam_hist), steps)
    lam0, gp, gtau = state
    y0_bar = lam0 + jumps[0]

    # where y(t - τ_j) leaves the history, f jumps when y0 ≠ φ(t0)
    def history_exit(j):
        tj = t0 + taus[j]
        inside = tj < t1
        tc = jnp.minimum(tj, t1)
        lam_j = lam_stored.evaluate(tc, nudged(tc, -1.0))
        y, yd = _lookups(fwd, taus, tc, -1.0)
        f_before = f(tc, y, yd.at[j].set(fwd.history(t0)), fwd.params)
        f_after = f(tc, y, yd.at[j].set(y0), fwd.params)
        return jnp.where(inside, jnp.dot(lam_j, f_before - f_after), 0.0)

    gtau = gtau + jax.vmap(history_exit)(jnp.arange(m))

    # saved times and the end time move the read-out along y'
    rate = lambda t, side: f(t, *_lookups(fwd, taus, t, side), fwd.params)
    ts_bar = jnp.sum(ys_bar * jax.vmap(lambda t: rate(t, 1.0))(ts), axis=1)
    t1_bar = jnp.dot(y_end_bar, rate(t1, -1.0))

    params_bar = gp
    names = [d for d in delays if d is not None]
    if names:
        params_bar = dict(params_bar)
        for j, d in enumerate(delays):
            if d is not None:
                params_bar[d] = params_bar[d] + gtau[j]
    return (params_bar, y0_bar, ts_bar, t1_bar)
