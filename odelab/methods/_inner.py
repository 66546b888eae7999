"""The inner solves behind the `odelab_solve` primitive: forward sensitivities and the adjoint.

Each runs diffrax under `ForwardMode`, so jax.jvp goes through it (second order), and reads the
problem (vector field, solver, step control) from the SolveConfig of the solve it serves.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import optimistix as optx

from .._solvers import solver_spec


def _is_none(x: Any) -> bool:
    return x is None


def _diffeqsolve(config, rest, field, y0, args, t0, t1, saveat, dt0=None, jump_ts=None,
                 norm=None):
    """One diffrax solve with the step control of the solve being differentiated.

    jump_ts: times where `field` jumps (steps end there, and restart on the far side).
    norm: the error norm, when it must cover only part of the state (see `adjoint_solve`).
    """
    if config.fixed_steps:
        controller = diffrax.ConstantStepSize()
        dt0 = jnp.where(t1 >= t0, 1.0, -1.0) * rest["dt"]
    else:
        controller = diffrax.PIDController(rtol=rest["rtol"], atol=rest["atol"],
                                           norm=norm or optx.rms_norm)
        if jump_ts is not None:
            controller = diffrax.ClipStepSizeController(controller, jump_ts=jump_ts)
    return diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        solver_spec(config.solver).make(),
        t0=t0,
        t1=t1,
        dt0=dt0,
        y0=y0,
        args=args,
        saveat=saveat,
        stepsize_controller=controller,
        adjoint=diffrax.ForwardMode(),
        max_steps=config.max_steps,
        throw=False,
    )


def _field(config, prest):
    """f as a function of (t, y, differentiable params)."""
    return lambda t, y, pdiff: config.f(t, y, eqx.combine(pdiff, prest))


def tangent_field(f, prest):
    """The field of the state y and its forward sensitivity s = ∂y/∂(y0, p)·(ẏ0, ṗ) together.

    State (y, s), args (differentiable params, ṗ): s' = (∂f/∂y)s + (∂f/∂p)ṗ, one jvp of f.
    Integrated as one state, the controller's error norm (RMS over every component, each scaled
    by rtol·|value| + atol) bounds the sensitivities' error as well as the state's.
    """

    def augmented(t, z, args):
        (y, s), (p, dp) = z, args
        return jax.jvp(lambda yy, pp: f(t, yy, eqx.combine(pp, prest)), (y, p), (s, dp))

    return augmented


def tangent_solve(config, rest, pdiff, prest, ty0, tp):
    """Forward sensitivities along (ty0, tp) at the save times and at t1 (see `tangent_field`)."""
    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=rest["ts"]), diffrax.SubSaveAt(t1=True)])
    out = _diffeqsolve(config, rest, tangent_field(config.f, prest), (rest["y0"], ty0),
                       (pdiff, tp), rest["t0"], rest["t1"], saveat)
    (_, s_ys), (_, s_end) = out.ys
    return s_ys, s_end[-1]


# Gauss–Legendre rule on [0, 1] (exact for polynomials of degree 5): the parameter cotangent is
# a quadrature of (∂f/∂p)ᵀλ over each step of the adjoint solve
_GAUSS_NODES = (0.5 - 0.1 * 15**0.5, 0.5, 0.5 + 0.1 * 15**0.5)
_GAUSS_WEIGHTS = (5.0 / 18.0, 8.0 / 18.0, 5.0 / 18.0)
_STEPS_PER_BLOCK = 16  # adjoint steps whose quadrature nodes are evaluated in one batch


def adjoint_solve(config, rest, pdiff, prest, c_ys, c_end):
    """The interpolating adjoint: cotangents of (y0, params) from cotangents of the saved states.

    One forward solve keeps the dense interpolant of y. The adjoint λ' = -(∂f/∂y)ᵀλ is then
    integrated from t1 back to t0 (λ jumping by the cotangent of each saved state as it passes
    its save time), reading y(t) from that interpolant; and the parameter cotangent
    μ = ∫ (∂f/∂p)ᵀλ dt is a Gauss–Legendre quadrature over the adjoint's own steps, reading λ
    from its dense interpolant. Keeping μ out of the integrated state means the adjoint solve
    is as small as the state, whatever the number of parameters (an implicit solver's Newton
    matrices too), and the quadrature's vector-Jacobian products run in batches.
    """
    f = _field(config, prest)
    t0, t1 = rest["t0"], rest["t1"]
    segments = getattr(config.method, "checkpoints", None)
    if segments is not None:
        return _checkpointed_adjoint(config, rest, f, pdiff, c_ys, c_end, segments)
    fwd = _diffeqsolve(config, rest, f, rest["y0"], pdiff, t0, t1, diffrax.SaveAt(dense=True))
    steps = jnp.maximum(fwd.stats["num_steps"], 1)
    h0 = jnp.abs(t1 - t0) / steps
    if config.fixed_steps:
        mu0 = jtu.tree_map(jnp.zeros_like, pdiff)
        return _adjoint_by_intervals(config, rest, f, fwd, pdiff, mu0, c_ys, c_end, h0)

    # One backward solve for all save times. λ(t) = ν(t) + C(t), where C(t) sums the cotangents
    # of the saves after t: ν is continuous, and C, a step function, enters ν's vector field,
    # which therefore jumps at the save times (steps are clipped to end there).
    ts = rest["ts"]
    later, pending = _pending_cotangents(ts, c_ys, c_end)

    def nu_field(t, nu, p):
        _, pullback = jax.vjp(lambda yy: f(t, yy, p), fwd.evaluate(t))
        return -pullback(nu + pending(t))[0]

    back = _diffeqsolve(config, rest, nu_field, c_end, pdiff, t1, t0,
                        diffrax.SaveAt(steps=True, dense=True), dt0=-h0, jump_ts=ts)
    mu = _parameter_quadrature(f, fwd, back, pending, pdiff, t0, t1)
    return back.ys[back.stats["num_accepted_steps"] - 1] + later[0], mu


def _pending_cotangents(ts, c_ys, c_end):
    """C(t): the sum of the cotangents of the saves after t (and of y(t1)), a step function."""
    later = jnp.concatenate([jnp.cumsum(c_ys[::-1], axis=0)[::-1], jnp.zeros_like(c_end)[None]])
    return later, lambda t: later[jnp.searchsorted(ts, t, side="right")]


def _checkpointed_adjoint(config, rest, f, pdiff, c_ys, c_end, segments):
    """The interpolating adjoint holding the dense interpolant of one segment at a time.

    A first forward solve records only its step times; `segments` segments of equal step counts
    are cut from them and a second solve keeps the state at their boundaries (the checkpoints).
    Going backward, each segment is solved forward again from its checkpoint with its dense
    interpolant, and the adjoint ν (see `adjoint_solve`) and the parameter quadrature run over
    that segment. Memory: one time per step, `segments` states, and one segment's interpolant
    and adjoint steps (max_steps / segments of each) instead of max_steps; cost: about two
    forward solves more than the unsegmented adjoint.
    """
    t0, t1, ts = rest["t0"], rest["t1"], rest["ts"]
    times = _diffeqsolve(config, rest, f, rest["y0"], pdiff, t0, t1,
                         diffrax.SaveAt(steps=True, fn=lambda t, y, args: None))
    n = times.stats["num_accepted_steps"]
    step_ends = jnp.concatenate([t0[None], jnp.where(jnp.isfinite(times.ts), times.ts, t1)])
    cut = (jnp.arange(segments + 1) * n) // segments  # steps done at each boundary
    bounds = step_ends[cut]
    first_dt = step_ends[jnp.minimum(cut + 1, step_ends.shape[0] - 1)] - bounds
    first_dt = jnp.where(first_dt > 0, first_dt, jnp.abs(t1 - t0) / jnp.maximum(n, 1))
    starts = _diffeqsolve(config, rest, f, rest["y0"], pdiff, t0, t1,
                          diffrax.SaveAt(ts=bounds[:-1])).ys

    per_segment = -(-config.max_steps // segments)  # the most steps of any segment
    seg_config = dataclasses.replace(config, max_steps=per_segment * 5 // 4 + 8)

    def forward(j):  # segment j solved again from its checkpoint, with its interpolant
        return _diffeqsolve(seg_config, rest, f, starts[j], pdiff, bounds[j], bounds[j + 1],
                            diffrax.SaveAt(dense=True), dt0=first_dt[j])

    mu0 = jtu.tree_map(jnp.zeros_like, pdiff)
    backward_order = jnp.arange(segments - 1, -1, -1)
    if config.fixed_steps:
        # λ itself is carried (ν's jumps need steps clipped to the save times, which fixed
        # steps cannot do): the intervals between save times, clipped to the segment, each
        # save's cotangent taken in the one segment holding it
        knots, cots = _knots(rest, c_ys, c_end)

        def segment(carry, j):
            a, b = bounds[j], bounds[j + 1]
            fwd = forward(j)
            take = ((knots > a) & (knots <= b)) | ((j == 0) & (knots == a))
            out = _intervals_backward(seg_config, rest, f, fwd, pdiff, *carry,
                                      jnp.clip(knots, a, b), cots, take, first_dt[j])
            return _nan_if(fwd.result != diffrax.RESULTS.successful, out), None

        (lam, mu), _ = jax.lax.scan(segment, (jnp.zeros_like(c_end), mu0), backward_order)
        return lam, mu

    later, pending = _pending_cotangents(ts, c_ys, c_end)

    def segment(carry, j):
        nu, mu = carry
        a, b = bounds[j], bounds[j + 1]
        fwd = forward(j)

        def nu_field(t, nu_, p):
            _, pullback = jax.vjp(lambda yy: f(t, yy, p), fwd.evaluate(t))
            return -pullback(nu_ + pending(t))[0]

        back = _diffeqsolve(seg_config, rest, nu_field, nu, pdiff, b, a,
                            diffrax.SaveAt(steps=True, dense=True), dt0=-first_dt[j],
                            jump_ts=ts)
        failed = (fwd.result != diffrax.RESULTS.successful) | (
            back.result != diffrax.RESULTS.successful)  # a segment ran out of steps
        steps = back.stats["num_accepted_steps"]
        nu_a = jnp.where(steps > 0, back.ys[jnp.maximum(steps - 1, 0)], nu)
        mu_j = _parameter_quadrature(f, fwd, back, pending, pdiff, a, b)
        return _nan_if(failed, (nu_a, jtu.tree_map(jnp.add, mu, mu_j))), None

    (nu, mu), _ = jax.lax.scan(segment, (c_end, mu0), backward_order)
    return nu + later[0], mu


def _nan_if(failed, tree):
    """`tree` with every leaf NaN where `failed`: a failed inner solve never passes for a result."""
    return jtu.tree_map(lambda x: jnp.where(failed, jnp.nan, x), tree)


def _parameter_quadrature(f, fwd, back, pending, pdiff, t0, t1):
    """μ = ∫_{t0}^{t1} (∂f/∂p)ᵀλ dt over the backward solve's steps, a block of steps at a time."""
    n = back.stats["num_accepted_steps"]  # the saved steps (rejected ones are not saved)
    ends = back.ts  # step k runs from ends[k-1] (t1 for k = 0) down to ends[k]; inf-padded
    starts = jnp.concatenate([t1[None], ends[:-1]])
    c = jnp.asarray(_GAUSS_NODES, dtype=t0.dtype)
    w = jnp.asarray(_GAUSS_WEIGHTS, dtype=t0.dtype)

    def block(b, mu):
        k = b * _STEPS_PER_BLOCK + jnp.arange(_STEPS_PER_BLOCK)
        live = k < n
        ta = jnp.where(live, starts[jnp.minimum(k, ends.shape[0] - 1)], t0)
        tb = jnp.where(live, ends[jnp.minimum(k, ends.shape[0] - 1)], t0)
        nodes = (tb[:, None] + (ta - tb)[:, None] * c[None, :]).ravel()
        weights = ((ta - tb)[:, None] * w[None, :]).ravel()  # zero for padding steps
        ys = jax.vmap(fwd.evaluate)(nodes)
        lams = jax.vmap(lambda t: back.evaluate(t) + pending(t))(nodes)

        def weighted(p):
            fs = jax.vmap(lambda t, y: f(t, y, p))(nodes, ys)
            return jnp.sum(weights[:, None] * lams * fs)

        return jtu.tree_map(jnp.add, mu, jax.grad(weighted)(pdiff))

    blocks = (n + _STEPS_PER_BLOCK - 1) // _STEPS_PER_BLOCK
    return jax.lax.fori_loop(0, blocks, block, jtu.tree_map(jnp.zeros_like, pdiff))


def _adjoint_by_intervals(config, rest, f, fwd, pdiff, mu0, c_ys, c_end, h0):
    """The adjoint for fixed steps: one solve per interval between save times."""
    knots, cots = _knots(rest, c_ys, c_end)
    take = jnp.ones(knots.shape, bool)
    lam, mu = _intervals_backward(config, rest, f, fwd, pdiff, jnp.zeros_like(c_end), mu0,
                                  knots, cots, take, h0)
    return lam + cots[0], mu


def _knots(rest, c_ys, c_end):
    """t0, the save times and t1, with the cotangents of the states there (none at t0)."""
    knots = jnp.concatenate([rest["t0"][None], rest["ts"], rest["t1"][None]])
    cots = jnp.concatenate([jnp.zeros_like(c_end)[None], c_ys, c_end[None]])
    return knots, cots


def _intervals_backward(config, rest, f, fwd, pdiff, lam, mu, knots, cots, take, h0):
    """(λ, μ) carried backward from knots[-1] to knots[0], interval by interval, with μ in the
    state; λ jumps by cots[i] at knots[i] where take[i]. Zero-length intervals cost nothing."""

    def adjoint_field(t, z, p):
        lam_, _ = z
        _, pullback = jax.vjp(lambda yy, pp: f(t, yy, pp), fwd.evaluate(t), p)
        return jtu.tree_map(jnp.negative, pullback(lam_))

    def interval(carry, i):
        lam_, mu_ = carry
        jump = jnp.where(take[i], cots[i], jnp.zeros_like(cots[i]))
        out = _diffeqsolve(config, rest, adjoint_field, (lam_ + jump, mu_), pdiff, knots[i],
                           knots[i - 1], diffrax.SaveAt(t1=True), dt0=-h0)
        return jtu.tree_map(lambda x: x[-1], out.ys), out.result != diffrax.RESULTS.successful

    index = jnp.arange(knots.shape[0] - 1, 0, -1)
    out, failed = jax.lax.scan(interval, (lam, mu), index)
    return _nan_if(jnp.any(failed), out)
