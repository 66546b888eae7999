"""The inner solves behind the `odelab_solve` primitive: forward sensitivities and the adjoint.

- `tangent_solve`: forward sensitivities, a diffrax solve under `ForwardMode` (so jax.jvp goes
  through it: second order).
- `forward_pass`: the solve as odelab's own loop over diffrax's solver and step-size controller,
  one step at a time, keeping what the adjoint needs: every accepted step's dense output, or,
  with `Interpolating(checkpoints=k)`, the integration state every max_steps/k steps.
- `adjoint_solve`: the interpolating adjoint, one backward sweep over the whole span (see
  `adjoint_solve` and `_sweep`).

Everything is plain JAX (while loops, no custom rules), so forward mode differentiates it:
`jax.jvp` of the adjoint gives Hessian-vector products. It reads the problem (vector field,
solver, step control) from the SolveConfig of the solve it serves.
"""

from __future__ import annotations

from typing import Any

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optimistix as optx
from jax.flatten_util import ravel_pytree

from ..solve.ode import tangent_field
from ..solve.solvers import solver_spec


def _is_none(x: Any) -> bool:
    return x is None


# --------------------------------------------------------------------------------------------
# forward sensitivities (diffrax)
# --------------------------------------------------------------------------------------------
def _diffeqsolve(config, rest, field, y0, args, t0, t1, saveat, dt0=None):
    """One diffrax solve with the step control of the solve being differentiated."""
    if config.fixed_steps:
        controller = diffrax.ConstantStepSize()
        dt0 = jnp.where(t1 >= t0, 1.0, -1.0) * rest["dt"]
    else:
        controller = diffrax.PIDController(rtol=rest["rtol"], atol=rest["atol"],
                                           norm=optx.rms_norm)
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




def tangent_solve(config, rest, pdiff, prest, ty0, tp):
    """Forward sensitivities along (ty0, tp) at the save times and at t1 (see `tangent_field`)."""
    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=rest["ts"]), diffrax.SubSaveAt(t1=True)])
    out = _diffeqsolve(config, rest, tangent_field(config.f, prest), (rest["y0"], ty0),
                       (pdiff, tp), rest["t0"], rest["t1"], saveat)
    (_, s_ys), (_, s_end) = out.ys
    return s_ys, s_end[-1]


# --------------------------------------------------------------------------------------------
# the solve one step at a time
# --------------------------------------------------------------------------------------------
def _make_solver(config, controller):
    """The solve's solver, forward-differentiable (a Runge–Kutta method's stages in a plain
    loop, as diffrax's ForwardMode sets it), with the tolerances its root finder takes from the
    step-size controller filled in (what diffeqsolve does for
    `diffrax.with_stepsize_controller_tols` root finders)."""
    solver = solver_spec(config.solver).make()
    if isinstance(solver, diffrax.AbstractRungeKutta) and solver.scan_kind is None:
        solver = eqx.tree_at(lambda s: s.scan_kind, solver, "lax", is_leaf=_is_none)
    root = getattr(solver, "root_finder", None)
    if root is None or not isinstance(controller, diffrax.AbstractAdaptiveStepSizeController):
        return solver
    names = [a for a in ("rtol", "atol", "norm")
             if type(getattr(root, a, None)).__name__ == "_UseStepSizeTol"]
    if not names:
        return solver
    return eqx.tree_at(lambda s: tuple(getattr(s.root_finder, a) for a in names), solver,
                       tuple(getattr(controller, a) for a in names))


def _controller(config, rtol, atol):
    if config.fixed_steps:
        return diffrax.ConstantStepSize()
    return diffrax.PIDController(rtol=rtol, atol=atol)


def _clip_to_end(tprev, tnext, t_end, floor, keep):
    """diffrax's rule: a step ending within 100 ULPs of the end ends at the end."""
    return jnp.where(tnext > floor, jnp.where(keep, t_end, tprev + 0.5 * (t_end - tprev)), tnext)


def _floor(t_end):
    floor = t_end
    for _ in range(100):
        floor = eqxi.prevbefore(floor)
    return floor


def _keep(keep, new, old):
    return jtu.tree_map(lambda a, b: jnp.where(keep, a, b), new, old)


def _arrays(tree):
    return jtu.tree_map(jnp.asarray, tree)


class _Forward:
    """The forward problem of a solve: y' = f(t, y, p) with the solve's solver and step control,
    stepped the way diffrax's diffeqsolve steps it (same solver, controller and clipping), so
    its steps are those of the plain solve."""

    def __init__(self, config, rest, f, pdiff):
        self.config, self.args = config, pdiff
        self.t0, self.t1 = rest["t0"], rest["t1"]
        self.term = diffrax.ODETerm(f)
        self.controller = _controller(config, rest.get("rtol"), rest.get("atol"))
        self.solver = _make_solver(config, self.controller)
        self.order = self.solver.error_order(self.term)
        self.dt0 = rest["dt"] if config.fixed_steps else None

    def start(self, y0):
        """The integration state at t0: (t, proposed step end, y, solver and controller state)."""
        # diffeqsolve hands the controller its terms wrapped (in diffrax's WrapTerm), so
        # PIDController.init takes its fixed first step (0.01) rather than estimating one; a
        # wrapped term here too keeps the steps those of the plain solve
        tnext, cst = self.controller.init(diffrax.MultiTerm(self.term), self.t0, self.t1, y0,
                                          self.dt0, self.args, self.solver.func, self.order)
        tnext = jnp.minimum(tnext, self.t1)
        sst = self.solver.init(self.term, self.t0, tnext, y0, self.args)
        return _arrays((self.t0, tnext, y0, sst, cst))

    def interpolant(self, t0, t1, info):
        return self.solver.interpolation_cls(t0=t0, t1=t1, **info)

    def march(self, state, t_stop, *, max_iter, record=0, every=0, slots=0, ts=None):
        """Step from `state` until t reaches t_stop (or after max_iter steps).

        record=B: keep the end times and dense output of up to B accepted steps (the step ends
        in `ends`, ends[0] the start); every=m, slots=K: keep the integration state before
        every m-th accepted step (K + 1 of them); ts: save the state at these times (sorted),
        interpolated as diffrax does (inf where not reached).
        """
        solver, controller, term, args, t1 = (self.solver, self.controller, self.term,
                                              self.args, self.t1)
        floor = _floor(t1)
        succeeded = diffrax.RESULTS.successful
        t, tnext, y, sst, cst = state
        info_shape = jax.eval_shape(
            lambda: solver.step(term, t, tnext, y, args, sst, False)[2])
        carry = dict(state=state, n_acc=jnp.asarray(0), n_rej=jnp.asarray(0),
                     result=succeeded)
        if record:
            carry["ends"] = jnp.full(record + 2, jnp.inf, dtype=t.dtype).at[0].set(t)
            carry["infos"] = jtu.tree_map(lambda s: jnp.zeros((record + 1,) + s.shape, s.dtype),
                                          info_shape)
        if every:  # slots + 1 checkpoints and a scratch slot
            carry["checkpoints"] = jtu.tree_map(
                lambda x: jnp.zeros((slots + 2,) + x.shape, x.dtype).at[0].set(x), state)
        if ts is not None:
            carry["ys"] = jnp.full(ts.shape + y.shape, jnp.inf, dtype=y.dtype)
            carry["i_save"] = jnp.asarray(0)

        def cond(c):
            going = (c["state"][0] < t_stop) & (c["result"] == succeeded)
            going = going & (c["n_acc"] + c["n_rej"] < max_iter)
            if record:
                going = going & (c["n_acc"] < record)
            return going

        def body(c):
            t, tnext, y, sst, cst = c["state"]
            y1, err, info, sst1, sres = solver.step(term, t, tnext, y, args, sst, False)
            if err is not None:
                err = jtu.tree_map(lambda e: jnp.where(jnp.isnan(e), jnp.inf, e), err)
            keep, tp, tn, _, cst1, cres = controller.adapt_step_size(
                t, tnext, y, y1, args, err, self.order, cst)
            keep = jnp.asarray(keep)
            tp = jnp.minimum(tp, t1)
            tn = _clip_to_end(tp, tn, t1, floor, keep)
            new = dict(c)
            new["state"] = _arrays((tp, tn, _keep(keep, y1, y), _keep(keep, sst1, sst),
                                    cst1 if cst1 is None else _arrays(cst1)))
            result = diffrax.RESULTS.where(keep, sres, succeeded)
            result = diffrax.RESULTS.where(c["result"] == succeeded, result, c["result"])
            new["result"] = diffrax.RESULTS.where(result == succeeded, cres, result)
            n_acc = c["n_acc"] + keep
            new["n_acc"], new["n_rej"] = n_acc, c["n_rej"] + (~keep)
            if record:
                slot = jnp.where(keep, c["n_acc"], record)  # rejected steps go to a spare slot
                new["ends"] = c["ends"].at[slot + 1].set(jnp.where(keep, tnext, jnp.inf))
                new["infos"] = jtu.tree_map(lambda b, v: b.at[slot].set(v), c["infos"], info)
            if every:
                due = keep & (n_acc % every == 0) & (n_acc // every <= slots)
                slot = jnp.where(due, n_acc // every, slots + 1)
                new["checkpoints"] = jtu.tree_map(lambda b, v: b.at[slot].set(v),
                                                  c["checkpoints"], new["state"])
            if ts is not None:
                interp = self.interpolant(t, tnext, info)

                def save_cond(s):
                    i, _ = s
                    return keep & (i < ts.shape[0]) & (ts[jnp.minimum(i, ts.shape[0] - 1)]
                                                       <= tnext)

                def save_body(s):
                    i, ys = s
                    return i + 1, ys.at[i].set(interp.evaluate(ts[i]))

                new["i_save"], new["ys"] = jax.lax.while_loop(save_cond, save_body,
                                                              (c["i_save"], c["ys"]))
            return new

        out = jax.lax.while_loop(cond, body, carry)
        unfinished = (out["state"][0] < t_stop) & (out["result"] == succeeded)
        out["result"] = diffrax.RESULTS.where(unfinished, diffrax.RESULTS.max_steps_reached,
                                              out["result"])
        return out


# --------------------------------------------------------------------------------------------
# the forward pass of a gradient: the primal solve, keeping what the adjoint needs
# --------------------------------------------------------------------------------------------
def _field(config, prest):
    """f as a function of (t, y, differentiable params)."""
    return lambda t, y, pdiff: config.f(t, y, eqx.combine(pdiff, prest))


def _segments(config):
    """(checkpoint slots, steps per segment) for Interpolating(checkpoints=k), else None."""
    k = getattr(config.method, "checkpoints", None)
    if k is None:
        return None
    k = min(k, config.max_steps)
    return k, -(-config.max_steps // k)


def forward_pass(config, rest, pdiff, prest):
    """The solve as the adjoint will read it: (outputs, residual).

    outputs: the saved states, the final time and state, the result code and step counts (the
    fields of the Solution); residual: every accepted step's end time and dense output, or
    (checkpointed) the integration state before every max_steps/k-th step, plus the step counts.
    The steps are diffrax's (same solver, controller and clipping); the saved states are
    interpolated as diffrax interpolates them.
    """
    fwd = _Forward(config, rest, _field(config, prest), pdiff)
    seg = _segments(config)
    kw = dict(record=config.max_steps) if seg is None else dict(every=seg[1], slots=seg[0])
    ts = rest["ts"]
    out = fwd.march(fwd.start(rest["y0"]), rest["t1"], max_iter=config.max_steps,
                    ts=None if seg is None else ts, **kw)
    t_end, _, y_end, _, _ = out["state"]
    if seg is None:  # the saved states from the record, as diffrax interpolates them
        ys, saved = _saved_states(fwd, out["ends"], out["infos"], out["n_acc"], ts)
    else:  # the saved states interpolated during the pass
        ys, saved = out["ys"], jnp.arange(ts.shape[0]) < out["i_save"]
    outputs = dict(ts=jnp.where(saved, ts, jnp.inf), ys=ys, t_reached=t_end, y_reached=y_end,
                   result=out["result"]._value, num_steps=out["n_acc"] + out["n_rej"],
                   num_accepted=out["n_acc"], num_rejected=out["n_rej"])
    ok = out["result"] == diffrax.RESULTS.successful
    if seg is None:
        residual = dict(ends=out["ends"], infos=out["infos"], n=out["n_acc"], ok=ok)
    else:
        residual = dict(checkpoints=out["checkpoints"], n=out["n_acc"], ok=ok)
    return outputs, residual


def _saved_states(fwd, ends, infos, n, ts):
    """The states at the save times from the recorded steps: a save at t is interpolated in the
    first step ending at or after t (diffrax's choice); inf where the solve stopped short."""
    k = jnp.clip(jnp.searchsorted(ends, ts, side="left") - 1, 0, jnp.maximum(n - 1, 0))

    def one(t, kk):
        info = jtu.tree_map(lambda b: b[kk], infos)
        return fwd.interpolant(ends[kk], ends[kk + 1], info).evaluate(t)

    saved = (ts <= ends[n]) & (n > 0)
    ys = jax.vmap(one)(ts, k)
    return jnp.where(saved.reshape((-1,) + (1,) * (ys.ndim - 1)), ys, jnp.inf), saved


# --------------------------------------------------------------------------------------------
# the adjoint
# --------------------------------------------------------------------------------------------
_WINDOW = 4  # a backward step may span up to _WINDOW - 1 forward steps
# a step's stage Jacobians ∂f/∂(y, p) are formed in one batch when they hold at most this many
# numbers (few states and parameters: one batched op instead of a chain of small ones);
# otherwise each stage takes a vector-Jacobian product
_JACOBIAN_SIZE = 512
_GAUSS_NODES = (0.5 - 0.1 * 15**0.5, 0.5, 0.5 + 0.1 * 15**0.5)  # Gauss–Legendre on [0, 1]
_GAUSS_WEIGHTS = (5.0 / 18.0, 8.0 / 18.0, 5.0 / 18.0)


def adjoint_solve(config, rest, pdiff, prest, c_ys, c_end, residual=None):
    """The interpolating adjoint: cotangents of (y0, params) from cotangents of the saved states.

    One backward sweep from t1 to t0 integrates λ' = -(∂f/∂y)ᵀλ with the solve's own solver and
    tolerances, reading y(t) from the forward pass's dense output (never re-integrating y
    backward, so stiff and chaotic problems are fine). λ jumps by each saved state's cotangent
    at its save time: steps are clipped to end there, and the step-size controller carries on
    across (the step proposed before the clip is kept), with no restart. The parameter
    cotangent μ = ∫ (∂f/∂p)ᵀλ dt is integrated alongside, from the same stages (explicit
    Runge–Kutta: the Runge–Kutta sum of the stages' (∂f/∂p)ᵀz, no extra evaluations of f) or
    by three-point Gauss–Legendre quadrature over each step's dense output (other solvers); μ
    stays out of the error control, so the controlled state is as small as y.

    `residual` is what `forward_pass` kept (None: the forward pass runs here). With
    `Interpolating(checkpoints=k)` the sweep walks the segments from last to first, each
    solved forward again from its checkpoint into a buffer of max_steps/k steps.
    """
    f = _field(config, prest)
    fwd = _Forward(config, rest, f, pdiff)
    seg = _segments(config)
    if residual is None:
        residual = forward_pass(config, rest, pdiff, prest)[1]
    back = _Backward(config, rest, f, fwd, pdiff, c_ys, c_end)
    if seg is None:
        carry = back.sweep(back.start(residual["ends"][residual["n"]]), residual["ends"],
                           residual["infos"], residual["n"] - 1, rest["t0"])
    else:
        carry = _segmented_sweep(back, fwd, residual, seg)
    return back.finish(carry, residual["ok"])


def _segmented_sweep(back, fwd, residual, seg):
    """The sweep over the segments between checkpoints, last to first, each solved forward again
    from its checkpoint (the integration state there, so its steps are the first pass's)."""
    slots, every = seg
    ckpt, n = residual["checkpoints"], residual["n"]
    last = jnp.maximum((n - 1) // every, 0)  # the segment holding the last step
    t_end = jnp.where(n > 0, fwd.t1, fwd.t0)
    # a segment's accepted steps: `every` of them when solved again as the first time (the
    # margin covers a solve again that rounds differently)
    size = every + every // 8 + 8

    def segment(c):
        j, carry = c
        start = jtu.tree_map(lambda b: b[j], ckpt)
        stop = jnp.where(j == last, t_end, ckpt[0][jnp.minimum(j + 1, slots)])
        out = fwd.march(start, stop, max_iter=4 * size, record=size)
        short = (out["state"][0] < stop) | (out["result"] != diffrax.RESULTS.successful)
        carry = back.sweep(carry, out["ends"], out["infos"], out["n_acc"] - 1, start[0])
        return j - 1, {**carry, "failed": carry["failed"] | short}

    first = back.start(t_end)
    _, carry = jax.lax.while_loop(lambda c: c[0] >= 0, segment, (last, first))
    return carry


class _Backward:
    """The adjoint's backward sweep, in the reversed time u = -t (so the controller steps
    forward): (λ, μ)' = ((∂f/∂y)ᵀλ, (∂f/∂p)ᵀλ), y(t) read from the forward dense output."""

    def __init__(self, config, rest, f, fwd, pdiff, c_ys, c_end):
        self.fwd, self.config = fwd, config
        self.t0, self.t1, ts = rest["t0"], rest["t1"], rest["ts"]
        y0 = rest["y0"]
        self.shape = y0.shape
        n = int(np.prod(self.shape))
        c_ys = c_ys.reshape(ts.shape[0], n)
        c_end = c_end.reshape(n)
        # cotangents of saves at one time act together: the jump at the last save of a group
        # is the group's sum, and after it the sweep's next save is the one before the group
        group = jnp.searchsorted(ts, ts, side="left")
        self.jump = jax.ops.segment_sum(c_ys, group, num_segments=ts.shape[0])[group]
        self.next_save = group - 1
        self.ts = ts
        self.lam_end = c_end + jnp.sum(jnp.where((ts >= self.t1)[:, None], c_ys, 0.0), axis=0)
        self.i_end = jnp.searchsorted(ts, self.t1, side="left") - 1
        # the absolute tolerance in units of the cotangents: the adjoint is linear in them, so
        # its relative accuracy should not depend on the scale of the loss
        scale = jax.lax.stop_gradient(jnp.maximum(jnp.max(jnp.abs(c_ys), initial=0.0),
                                                  jnp.max(jnp.abs(c_end), initial=0.0)))
        scale = jnp.where(scale > 0, scale, 1.0)
        self.fixed = config.fixed_steps
        self.controller = _controller(config, rest.get("rtol"),
                                      None if self.fixed else rest["atol"] * scale)
        self.solver = _make_solver(config, self.controller)
        self.dt = rest["dt"] if self.fixed else None
        # the parameters as they are (no flattening: a network's weights stay matrices);
        # flattened only where the stage Jacobians are formed whole
        self.p = pdiff
        self.pflat, self.unravel = ravel_pytree(pdiff)
        self.f_flat = lambda t, y, p: f(t, y.reshape(self.shape), p).ravel()
        self.n = n
        self.jacobians = n * (n + self.pflat.size) <= _JACOBIAN_SIZE
        tableau = getattr(self.solver, "tableau", None)
        self.erk = isinstance(self.solver, diffrax.AbstractERK) and isinstance(
            tableau, diffrax.ButcherTableau)
        if self.erk:
            self.tableau = tableau
        self.order = self.solver.error_order(diffrax.ODETerm(lambda t, y, a: y))
        self.max_iter = 4 * config.max_steps + 2 * ts.shape[0] + 16

    # -- state --------------------------------------------------------------------------------
    def start(self, t_end):
        """The sweep's carry at t_end (the end of the forward pass)."""
        u = -t_end
        lam = self.lam_end
        term = diffrax.ODETerm(lambda u_, l_, a: l_)
        if self.fixed:
            h, cst = self.dt, None
        else:
            # a first step of 1e-3 of the span: the controller shrinks or grows it from there
            h = 1e-3 * jnp.abs(self.t1 - self.t0) + jnp.zeros_like(u)
            _, cst = self.controller.init(term, u, u + h, lam, h, None, None, self.order)
        carry = dict(u=u, h=h, lam=lam, mu=jtu.tree_map(jnp.zeros_like, self.p), cst=cst,
                     i=self.i_end, jump=jnp.asarray(True), failed=jnp.asarray(False),
                     steps=jnp.asarray(0))
        if not self.erk:
            carry["sst"] = self.solver.init(self._term(None, None, None), u, u + h, lam, self.p)
        return _arrays(carry)

    def finish(self, carry, ok):
        lam, mu = carry["lam"], carry["mu"]
        failed = carry["failed"] | ~ok
        lam, mu = _nan_if(failed, (lam, mu))
        return lam.reshape(self.shape), mu

    # -- reading y ----------------------------------------------------------------------------
    def _y_at(self, ends, infos, k, t):
        """y at times t (shape (m,)), within forward steps k - _WINDOW + 2 .. k.

        The window's steps are sliced out together and each time's step picked by a one-hot
        sum (fused elementwise work): cheaper on CPU than a gather per time."""
        w = _WINDOW - 1
        lo = jnp.clip(k - w + 1, 0, ends.shape[0] - w - 1)  # the window: steps lo .. lo + w - 1
        edges = jax.lax.dynamic_slice_in_dim(ends, lo, w + 1)
        window = jtu.tree_map(lambda b: jax.lax.dynamic_slice_in_dim(b, lo, w), infos)
        # the step holding each time: the last one starting at or before it (at least lo)
        local = jnp.sum(t[:, None] >= edges[None, 1:w], axis=1)
        local = jnp.minimum(local, k - lo)
        onehot = local[:, None] == jnp.arange(w)[None, :]  # (m, w)

        def pick(x):  # (w, ...) -> (m, ...); `where`, not a product: unused ends are inf
            mask = onehot.reshape(onehot.shape + (1,) * (x.ndim - 1))
            return jnp.sum(jnp.where(mask, x[None], 0), axis=1)

        info = jtu.tree_map(pick, window)
        t_a, t_b = pick(edges[:w]), pick(edges[1:])

        def one(tt, ta, tb, inf):
            return self.fwd.interpolant(ta, tb, inf).evaluate(tt).ravel()

        return jax.vmap(one)(t, t_a, t_b, info)

    def _term(self, ends, infos, k):
        """The adjoint field in u, for solvers stepped by diffrax (ends None: a placeholder)."""

        def field(u, lam, p):
            if ends is None:
                return lam
            y = self._y_at(ends, infos, k, -u[None])[0]
            _, pullback = jax.vjp(lambda yy: self.f_flat(-u, yy, p), y)
            return pullback(lam)[0]

        return diffrax.ODETerm(field)

    # -- one step -----------------------------------------------------------------------------
    def _erk_step(self, u, h, lam, ends, infos, k):
        """An explicit Runge–Kutta step of (λ, μ). The stages of λ take (∂f/∂y)ᵀz in turn;
        μ's increment h Σ bᵢ (∂f/∂p)ᵀzᵢ is one batched product over the stages at the end
        (matrix-sized work for a network's weights, instead of a vector-sized one per stage).
        With few states and parameters every stage's Jacobian is formed in one batch instead."""
        tab = self.tableau
        c = np.concatenate([[0.0], np.asarray(tab.c)])
        a = [np.asarray(row) for row in tab.a_lower]
        b, e = np.asarray(tab.b_sol), np.asarray(tab.b_error)
        us = u + h * jnp.asarray(c, dtype=u.dtype)
        ys = self._y_at(ends, infos, k, -us)
        stages = len(c)
        if self.jacobians:
            f_flat = lambda t, y, pf: self.f_flat(t, y, self.unravel(pf))  # noqa: E731
            jac = jax.vmap(jax.jacrev(f_flat, argnums=(1, 2)), in_axes=(0, 0, None))
            jy, jp = jac(-us, ys, self.pflat)  # (stages, n, n), (stages, n, P)
            # products as sums of elementwise ones, which XLA fuses (tiny dots do not)
            vjp = lambda i, z: jnp.sum(z[:, None] * jy[i], axis=0)  # noqa: E731
        else:
            vjp = lambda i, z: jax.vjp(  # noqa: E731
                lambda yy: self.f_flat(-us[i], yy, self.p), ys[i])[1](z)[0]
        ks, zs = [], []
        for i in range(stages):
            z = lam
            for j in range(i):
                if a[i - 1][j] != 0:
                    z = z + a[i - 1][j] * ks[j]
            zs.append(z)
            ks.append(h * vjp(i, z))
        lam1 = lam + sum(b[i] * ks[i] for i in range(stages) if b[i] != 0)
        err = sum(e[i] * ks[i] for i in range(stages) if e[i] != 0)
        used = [i for i in range(stages) if b[i] != 0]
        bz = jnp.stack([b[i] * zs[i] for i in used])
        if self.jacobians:
            dmu = self.unravel(h * jnp.sum(bz[:, :, None] * jp[np.asarray(used)], axis=(0, 1)))
        else:
            sel = np.asarray(used)
            _, pullback = jax.vjp(
                lambda p: jax.vmap(lambda t, y: self.f_flat(t, y, p))(-us[sel], ys[sel]),
                self.p)
            dmu = jtu.tree_map(lambda x: h * x, pullback(bz)[0])
        return lam1, err, dmu, diffrax.RESULTS.successful

    def _solver_step(self, u, ub, lam, sst, jump, ends, infos, k):
        """A step of any diffrax solver on λ, and μ by Gauss–Legendre quadrature of
        (∂f/∂p)ᵀλ over the step, λ from the step's dense output."""
        term = self._term(ends, infos, k)
        lam1, err, info, sst1, result = self.solver.step(term, u, ub, lam, self.p, sst, jump)
        nodes = u + (ub - u) * jnp.asarray(_GAUSS_NODES, dtype=u.dtype)
        weights = (ub - u) * jnp.asarray(_GAUSS_WEIGHTS, dtype=u.dtype)
        lams = jax.vmap(self.solver.interpolation_cls(t0=u, t1=ub, **info).evaluate)(nodes)
        ys = self._y_at(ends, infos, k, -nodes)
        _, pullback = jax.vjp(
            lambda p: jax.vmap(lambda t, y: self.f_flat(t, y, p))(-nodes, ys), self.p)
        dmu = pullback(weights[:, None] * lams)[0]
        return lam1, err, dmu, sst1, result

    # -- the sweep ----------------------------------------------------------------------------
    def sweep(self, carry, ends, infos, k_last, t_stop):
        """Carry the adjoint from its time down to t_stop over one forward record (`ends`,
        `infos`, its last step k_last)."""
        u_stop = -t_stop
        span = jnp.abs(self.t1 - self.t0)
        floor = u_stop - 64 * jnp.finfo(u_stop.dtype).eps * jnp.maximum(span, jnp.abs(u_stop))
        ts = self.ts

        def step_index(k, t):
            k = k - sum((t < ends[jnp.maximum(k - j, 0)]).astype(k.dtype)
                        for j in range(_WINDOW - 1))
            return jnp.maximum(k, 0)

        def cond(c):
            return (c["u"] < u_stop) & ~c["failed"]

        def body(c):
            u, h, lam, i, k = c["u"], c["h"], c["lam"], c["i"], c["k"]
            u_save = jnp.where(i >= 0, -ts[jnp.maximum(i, 0)], jnp.inf)
            u_window = -ends[jnp.maximum(k - _WINDOW + 2, 0)]
            target = jnp.where(u + h > floor, u_stop, u + h)
            ub = jnp.minimum(jnp.minimum(target, u_window), jnp.minimum(u_save, u_stop))
            if self.erk:
                lam1, err, dmu, result = self._erk_step(u, ub - u, lam, ends, infos, k)
                sst1 = None
            else:
                lam1, err, dmu, sst1, result = self._solver_step(u, ub, lam, c["sst"],
                                                                 c["jump"], ends, infos, k)
            if self.fixed:
                keep, h_next, cst1 = jnp.asarray(True), self.dt + jnp.zeros_like(h), None
            else:
                err = jnp.where(jnp.isnan(err), jnp.inf, err)
                keep, _, un, _, cst1, cres = self.controller.adapt_step_size(
                    u, ub, lam, lam1, None, err, self.order, c["cst"])
                result = diffrax.RESULTS.where(result == diffrax.RESULTS.successful, cres,
                                               result)
                h_ctrl = un - jnp.where(keep, ub, u)
                # a step cut short (at a save time, the end of the window or the sweep) keeps
                # the step proposed before the cut: the controller is not restarted
                h_next = jnp.where(keep & (ub < u + h), jnp.maximum(h_ctrl, h), h_ctrl)
                h_next = jax.lax.stop_gradient(h_next)
                cst1 = _arrays(cst1)
            at_save = keep & (ub == u_save)
            i_safe = jnp.maximum(i, 0)
            lam1 = lam1 + jnp.where(at_save, self.jump[i_safe], 0.0)
            new = dict(c)
            new["u"] = jnp.where(keep, ub, u)
            new["h"] = h_next
            new["lam"] = jnp.where(keep, lam1, lam)
            new["mu"] = jtu.tree_map(lambda m, d: m + jnp.where(keep, d, 0.0), c["mu"], dmu)
            new["cst"] = cst1
            new["i"] = jnp.where(at_save, self.next_save[i_safe], i)
            new["k"] = step_index(k, -new["u"])
            new["jump"] = at_save | (c["jump"] & ~keep)
            new["steps"] = c["steps"] + 1
            new["failed"] = c["failed"] | (result != diffrax.RESULTS.successful) | (
                c["steps"] + 1 >= self.max_iter)
            if not self.erk:
                new["sst"] = _keep(keep, sst1, c["sst"])
            return new

        carry = {**carry, "k": step_index(jnp.maximum(k_last, 0), -carry["u"])}
        out = jax.lax.while_loop(cond, body, carry)
        out.pop("k")
        return out


def _nan_if(failed, tree):
    """`tree` with every leaf NaN where `failed`: a failed inner solve never passes for a result."""
    return jtu.tree_map(lambda x: jnp.where(failed, jnp.nan, x), tree)
