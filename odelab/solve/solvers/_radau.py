"""RadauIIA5: the 3-stage Radau IIA collocation method (order 5), after Hairer–Wanner's RADAU5.

The stage equations are solved by simplified Newton with one Jacobian and one LU per step. For
simplicity the Newton matrix is the dense 3n×3n `I − h A⊗J` (Hairer–Wanner transform it into
one real and one complex n×n system, 5n³ instead of 27n³ flops); that is the right trade-off
for the small systems odelab is about, not for n in the hundreds.

Gradients: the Newton loop is a `while_loop`, which reverse mode cannot differentiate, so
the stage values are differentiated by the implicit function theorem
(`optimistix.internal.implicit_jvp`), exactly as diffrax's own implicit solvers do. That gives
the derivative of the exact collocation solution of each step, with every diffrax adjoint.
"""

from __future__ import annotations

from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import lineax as lx
import numpy as np
import optimistix as optx
from jax.typing import ArrayLike
from optimistix.internal import implicit_jvp

from ._flat import FlatField, tree_evaluate, unit_interval


def _radau_coefficients():
    """Nodes, matrix, embedded error weights and interpolation matrix of Radau IIA (s=3)."""
    sq6 = np.sqrt(6.0)
    c = np.array([(4 - sq6) / 10, (4 + sq6) / 10, 1.0])
    powers = np.arange(1, 4)
    # Collocation conditions C(3): Σ_j a_ij c_j^(k−1) = c_i^k / k, k = 1..3.
    vander = c[None, :] ** (powers[:, None] - 1)  # [k, j] = c_j^(k−1)
    integrals = c[:, None] ** powers[None, :] / powers[None, :]  # [i, k] = c_i^k / k
    a = integrals @ np.linalg.inv(vander.T)
    a_inv = np.linalg.inv(a)
    eigenvalues = np.linalg.eigvals(a_inv)
    gamma_hat = float(np.real(eigenvalues[np.argmin(np.abs(np.imag(eigenvalues)))]))
    gamma0 = 1.0 / gamma_hat
    # Embedded method y0 + h(γ0 f(y0) + Σ b̂_j f(Y_j)) of order 3; its difference to the
    # collocation solution, written with h f(Y) = A⁻¹ Z, is γ0 h f(y0) + Σ e_j Z_j.
    b_hat = np.linalg.solve(vander, 1.0 / powers - gamma0 * (powers == 1))
    e = (b_hat - a[-1]) @ a_inv
    # The collocation polynomial Z(θ) = Σ_k θ^k P_k with Z(c_i) = Z_i.
    interp = np.linalg.inv(c[:, None] ** powers[None, :])
    return c, a, gamma0, e, interp


C, A, GAMMA0, ERROR_WEIGHTS, INTERPOLATION = _radau_coefficients()

_RUNNING, _CONVERGED, _FAILED = 0, 1, 2


class RadauInterpolation(diffrax.AbstractLocalInterpolation):
    """The collocation polynomial of a Radau step: y(θ) = y0 + θ(P1 + θ(P2 + θP3))."""

    t0: ArrayLike
    t1: ArrayLike
    y0: object
    coeffs: object  # pytree like y, each leaf with a leading axis of 3

    def evaluate(self, t0, t1=None, left=True):
        del left
        if t1 is not None:
            return tree_evaluate(lambda a, b: b - a, self.evaluate(t0), self.evaluate(t1))
        theta = unit_interval(self.t0, t0, self.t1)
        return tree_evaluate(
            lambda y0, p: y0 + theta * (p[0] + theta * (p[1] + theta * p[2])),
            self.y0,
            self.coeffs,
        )


def _newton_tolerance(rtol, dtype):
    """RADAU5's Newton stopping tolerance, in units of the step's error tolerance.

    Hairer–Wanner stop at max(10ε/rtol', min(0.03, √rtol')) relative to their transformed
    tolerance rtol' = 0.1 rtol^(2/3); converted to the controller's rtol this is about 0.03
    at every tolerance (a stricter 0.01 made Robertson reject a third of its steps).
    """
    rtol = jnp.asarray(rtol, dtype)
    transformed = 0.1 * rtol ** (2 / 3)
    tolerance = jnp.maximum(10 * jnp.finfo(dtype).eps / transformed,
                            jnp.minimum(0.03, jnp.sqrt(transformed)))
    return tolerance * transformed / rtol


def _rms(x):
    return jnp.sqrt(jnp.mean(jnp.square(x)))


def _newton_primal(inputs):
    """Simplified Newton on the stage equations, with Hairer–Wanner's convergence control.

    Stops when the predicted remaining error `θ/(1−θ)·|ΔZ|` is below `kappa` (in units of the
    tolerance), and gives up early when the contraction θ says it will not get there within
    `max_iters`. On failure the initial guess comes back, so that nothing downstream sees
    NaN (a NaN would leak into gradients even through a rejected step).
    """
    residual_fn, z0, lu, scale, kappa, faccon0, max_iters = inputs
    tiny = jnp.finfo(z0.dtype).eps

    def cond(carry):
        return carry[-1] == _RUNNING

    def body(carry):
        it, z, dz_norm_prev, faccon, _ = carry
        dz = -jsl.lu_solve(lu, residual_fn(z, None))
        dz_norm = _rms(dz / scale)
        first = it == 0
        theta = dz_norm / dz_norm_prev
        faccon = jnp.where(first, faccon, theta / (1 - theta))
        remaining = max_iters - 1 - it
        too_slow = ~first & (faccon * dz_norm * theta ** remaining.astype(z.dtype) >= kappa)
        failed = ~jnp.isfinite(dz_norm) | (~first & (theta >= 0.99)) | too_slow
        converged = ~failed & (faccon * dz_norm <= kappa)
        failed = failed | (~converged & (it + 1 >= max_iters))
        status = jnp.where(failed, _FAILED, jnp.where(converged, _CONVERGED, _RUNNING))
        z = jnp.where(failed, z, z + dz)
        return it + 1, z, jnp.maximum(dz_norm, tiny), faccon, status

    init = (jnp.array(0), z0, jnp.array(1.0, z0.dtype), faccon0, jnp.array(_RUNNING))
    iters, z, _, faccon, status = jax.lax.while_loop(cond, body, init)
    ok = status == _CONVERGED
    return jnp.where(ok, z, z0), (ok, faccon, iters)


def _newton_rewrite(z, _, inputs):
    residual_fn = inputs[0]
    return residual_fn(z, None)


class RadauIIA5(diffrax.AbstractImplicitSolver, diffrax.AbstractAdaptiveSolver):
    """Radau IIA of order 5: the classic implicit Runge–Kutta method for stiff problems.

    L-stable, stiffly accurate, with Hairer–Wanner's RADAU5 error estimate and a dense output
    by the collocation polynomial (order 3 in between steps, 5 at the step ends). Use with an
    adaptive controller, whose `rtol`/`atol`/`norm` also set the Newton tolerances:
    `diffrax.diffeqsolve(diffrax.ODETerm(f), RadauIIA5(), t0, t1, dt0, y0,
    stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-10))`.

    `root_finder` only carries the Newton tolerances (`rtol`, `atol`, `norm`, `kappa`): the
    iteration itself is the RADAU5 simplified Newton. `root_find_max_steps` is the most
    Newton iterations before the step is rejected and retried with a smaller one.
    """

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = RadauInterpolation

    root_finder: optx.AbstractRootFinder = diffrax.with_stepsize_controller_tols(
        diffrax.VeryChord
    )()
    root_find_max_steps: int = 7

    def order(self, terms):
        return 5

    def error_order(self, terms):
        # The embedded solution is of order 3, so the local error estimate is O(h⁴).
        return 4

    def init(self, terms, t0, t1, y0, args):
        y0_flat = FlatField(terms, y0, args).y0
        dtype = y0_flat.dtype
        previous_coeffs = jnp.zeros((3, y0_flat.shape[0]), dtype)
        previous_h = jnp.asarray(t1 - t0, dtype)
        faccon = jnp.array(1.0, dtype)
        return previous_coeffs, previous_h, faccon

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        field = FlatField(terms, y0, args)
        y0_flat = field.y0
        dtype = y0_flat.dtype
        n = y0_flat.shape[0]
        h = jnp.asarray(t1 - t0, dtype)
        a, c = jnp.asarray(A, dtype), jnp.asarray(C, dtype)
        rtol, atol, norm = self.root_finder.rtol, self.root_finder.atol, self.root_finder.norm
        kappa = _newton_tolerance(rtol, dtype)

        f0 = field(t0, y0_flat)
        jac = jax.jacfwd(lambda y: field(t0, y))(y0_flat)
        newton_lu = jsl.lu_factor(jnp.eye(3 * n, dtype=dtype) - h * jnp.kron(a, jac))
        error_lu = jsl.lu_factor(jnp.eye(n, dtype=dtype) - (GAMMA0 * h) * jac)

        def residual(z, _):
            stages = z.reshape(3, n)
            f_stages = jnp.stack([field(t0 + c[i] * h, y0_flat + stages[i]) for i in range(3)])
            return z - h * (a @ f_stages).reshape(-1)

        z0 = self._predict(solver_state, h, made_jump).reshape(-1)
        residual_fn = eqx.filter_closure_convert(residual, z0, None)
        scale = jnp.tile(atol + rtol * jnp.abs(y0_flat), 3)
        faccon0 = jnp.maximum(solver_state[2], jnp.finfo(dtype).eps) ** 0.8
        newton_inputs = (
            residual_fn,
            *jax.lax.stop_gradient((z0, newton_lu, scale, kappa, faccon0)),
            self.root_find_max_steps,
        )
        z, (ok, faccon, _) = implicit_jvp(
            _newton_primal, _newton_rewrite, newton_inputs, frozenset(), lx.LU()
        )
        stages = z.reshape(3, n)
        y1_flat = y0_flat + stages[2]

        error_flat = self._error(field, t0, h, y0_flat, y1_flat, f0, stages, error_lu, norm,
                                 rtol, atol)
        # RADAU5's tolerance transformation: it controls the error against rtol' =
        # 0.1 rtol^(2/3), because the order-3 estimate grossly overstates the error of the
        # order-5 solution at tight tolerances. Scaling the estimate by rtol/rtol' does the
        # same for any step size controller.
        error_flat = error_flat * (10.0 * jnp.asarray(rtol, dtype) ** (1 / 3))
        error_flat = jnp.where(ok, error_flat, jnp.inf)
        coeffs = jnp.asarray(INTERPOLATION, dtype) @ stages

        y1 = field.unravel(y1_flat)
        dense_info = dict(y0=y0, coeffs=field.unravel_stack(coeffs))
        new_state = jax.lax.stop_gradient((coeffs, h, jnp.where(ok, faccon, 1.0)))
        result = diffrax.RESULTS.where(
            ok,
            diffrax.RESULTS.successful,
            diffrax.RESULTS.promote(optx.RESULTS.nonlinear_divergence),
        )
        return y1, field.unravel(error_flat), dense_info, new_state, result

    @staticmethod
    def _predict(solver_state, h, made_jump):
        """Stage guesses from the previous step's collocation polynomial, extrapolated."""
        coeffs, previous_h, _ = solver_state
        c = jnp.asarray(C, coeffs.dtype)

        def z_previous(theta):
            theta = theta[:, None]
            return theta * (coeffs[0] + theta * (coeffs[1] + theta * coeffs[2]))

        guess = z_previous(1 + c * h / previous_h) - z_previous(jnp.ones_like(c))
        guess = jnp.where(made_jump | ~jnp.all(jnp.isfinite(guess)), 0.0, guess)
        return jax.lax.stop_gradient(guess)

    @staticmethod
    def _error(field, t0, h, y0, y1, f0, stages, error_lu, norm, rtol, atol):
        """RADAU5's error estimate (I − γ0 h J)⁻¹(γ0 h f(y0) + Σ e_j Z_j), with its second,
        smoothed evaluation when the first one would reject the step (stiff components
        otherwise make the first estimate far too pessimistic)."""
        weighted = jnp.asarray(ERROR_WEIGHTS, y0.dtype) @ stages
        first = jsl.lu_solve(error_lu, (GAMMA0 * h) * f0 + weighted)
        tolerance = atol + rtol * jnp.maximum(jnp.abs(y0), jnp.abs(y1))
        second = jsl.lu_solve(error_lu, (GAMMA0 * h) * field(t0, y0 + first) + weighted)
        return jnp.where(norm(first / tolerance) >= 1, second, first)

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)
