"""The inner solves behind the `odelab_solve` primitive: forward sensitivities and the adjoint.

Each runs diffrax under `ForwardMode`, so jax.jvp goes through it (second order), and reads the
problem (vector field, solver, step control) from the SolveConfig of the solve it serves.
"""

from __future__ import annotations

from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu

from .._solvers import solver_spec


def _is_none(x: Any) -> bool:
    return x is None


def _diffeqsolve(config, rest, field, y0, args, t0, t1, saveat, dt0=None):
    """One diffrax solve with the step control of the solve being differentiated."""
    if config.fixed_steps:
        controller = diffrax.ConstantStepSize()
        dt0 = jnp.where(t1 >= t0, 1.0, -1.0) * rest["dt"]
    else:
        controller = diffrax.PIDController(rtol=rest["rtol"], atol=rest["atol"])
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


def tangent_solve(config, rest, pdiff, prest, ty0, tp):
    """Forward sensitivities along (ty0, tp) at the save times and at t1.

    The sensitivities are part of the integrated state, so the controller's error norm (RMS over
    every component, each scaled by rtol·|value| + atol) bounds their error as well as the state's.
    """
    f = _field(config, prest)

    def augmented(t, z, args):
        (y, s), (p, dp) = z, args
        return jax.jvp(lambda yy, pp: f(t, yy, pp), (y, p), (s, dp))

    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=rest["ts"]), diffrax.SubSaveAt(t1=True)])
    out = _diffeqsolve(config, rest, augmented, (rest["y0"], ty0), (pdiff, tp), rest["t0"],
                       rest["t1"], saveat)
    (_, s_ys), (_, s_end) = out.ys
    return s_ys, s_end[-1]


def adjoint_solve(config, rest, pdiff, prest, c_ys, c_end):
    """The interpolating adjoint: cotangents of (y0, params) from cotangents of the saved states.

    One forward solve keeps the dense interpolant of y; then, from t1 back to t0, the adjoint
    λ' = -(∂f/∂y)ᵀλ and the parameter cotangent μ' = -(∂f/∂p)ᵀλ are integrated between
    consecutive save times, λ jumping by the cotangent of each saved state. Each interval starts
    with the step size the previous one ended with, so restarting costs little.
    """
    f = _field(config, prest)
    t0, t1, ts = rest["t0"], rest["t1"], rest["ts"]
    fwd = _diffeqsolve(config, rest, f, rest["y0"], pdiff, t0, t1, diffrax.SaveAt(dense=True))

    def adjoint_field(t, z, p):
        lam, _ = z
        _, pullback = jax.vjp(lambda yy, pp: f(t, yy, pp), fwd.evaluate(t), p)
        gy, gp = pullback(lam)
        return jtu.tree_map(jnp.negative, (gy, gp))

    knots = jnp.concatenate([t0[None], ts, t1[None]])
    cots = jnp.concatenate([jnp.zeros_like(c_end)[None], c_ys, c_end[None]])
    mu0 = jtu.tree_map(jnp.zeros_like, pdiff)
    steps = jnp.maximum(fwd.stats["num_steps"], 1)
    h0 = jnp.abs(t1 - t0) / steps

    def interval(carry, i):
        lam, mu, h = carry
        lam = lam + cots[i]
        ta, tb = knots[i], knots[i - 1]
        out = _diffeqsolve(config, rest, adjoint_field, (lam, mu), pdiff, ta, tb,
                           diffrax.SaveAt(t1=True), dt0=-h)
        lam, mu = jtu.tree_map(lambda x: x[-1], out.ys)
        n = out.stats["num_steps"]
        h = jnp.where(n > 0, (ta - tb) / jnp.maximum(n, 1), h)
        return (lam, mu, h), None

    index = jnp.arange(knots.shape[0] - 1, 0, -1)
    (lam, mu, _), _ = jax.lax.scan(interval, (jnp.zeros_like(c_end), mu0, h0), index)
    return lam + cots[0], mu
