"""Rodas5: a stiffly accurate Rosenbrock method of order 5(4) with a 4th-order dense output.

A Rosenbrock step needs no Newton iteration: one Jacobian (by `jax.jacfwd`), one LU of
`I/(γh) − J` and one linear solve per stage. Every operation is plain differentiable JAX, so
gradients are those of the discrete solve, with every diffrax adjoint.
"""

from __future__ import annotations

from typing import ClassVar

import diffrax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jax.typing import ArrayLike

from ._flat import FlatField, tree_evaluate, unit_interval


class RosenbrockTableau:
    """Coefficients of a Rosenbrock method in the form used by Hairer–Wanner's RODAS code.

    Stage i solves `(I/(γh) − J) k_i = f(t0 + c_i h, y0 + Σ a_ij k_j) + h d_i ∂f/∂t
    + Σ (C_ij / h) k_j`; the step is `y1 = y0 + Σ b_j k_j`, the error estimate is the last
    stage `k_s`, and the dense output uses `dense @ k`.
    """

    def __init__(self, gamma, a, C, c, d, b, dense):
        self.gamma = float(gamma)
        self.a = np.asarray(a, dtype=np.float64)
        self.C = np.asarray(C, dtype=np.float64)
        self.c = np.asarray(c, dtype=np.float64)
        self.d = np.asarray(d, dtype=np.float64)
        self.b = np.asarray(b, dtype=np.float64)
        self.dense = np.asarray(dense, dtype=np.float64)
        self.stages = len(self.c)


def _rodas5_tableau() -> RosenbrockTableau:
    # Di Marzo (1993), "RODAS5(4) – Méthodes de Rosenbrock d'ordre 5(4) adaptées aux problèmes
    # différentiels-algébriques", in the transformed W-form; the last three stages are
    # y6 = y0 + Σ a6j k_j, y7 = y6 + k6, y8 = y7 + k7, y1 = y8 + k8 (stiffly accurate).
    a6 = [-14.09640773051259, 6.925207756232704, -41.47510893210728, 2.343771018586405,
          24.13215229196062]
    a = np.zeros((8, 8))
    a[1, 0] = 2.0
    a[2, :2] = [3.040894194418781, 1.041747909077569]
    a[3, :3] = [2.576417536461461, 1.622083060776640, -0.9089668560264532]
    a[4, :4] = [2.760842080225597, 1.446624659844071, -0.3036980084553738, 0.2877498600325443]
    a[5, :5] = a6
    a[6, :6] = a6 + [1.0]
    a[7, :7] = a6 + [1.0, 1.0]
    b = np.array(a6 + [1.0, 1.0, 1.0])
    C = np.zeros((8, 8))
    C[1, 0] = -10.31323885133993
    C[2, :2] = [-21.04823117650003, -7.234992135176716]
    C[3, :3] = [32.22751541853323, -4.943732386540191, 19.44922031041879]
    C[4, :4] = [-20.69865579590063, -8.816374604402768, 1.260436877740897, -0.7495647613787146]
    C[5, :5] = [-46.22004352711257, -17.49534862857472, -289.6389582892057, 93.60855400400906,
                318.3822534212147]
    C[6, :6] = [34.20013733472935, -14.15535402717690, 57.82335640988400, 25.83362985412365,
                1.408950972071624, -6.551835421242162]
    C[7, :7] = [42.57076742291101, -13.80770672017997, 93.98938432427124, 18.77919633714503,
                -31.58359187223370, -6.685968952921985, -5.810979938412932]
    gamma = 0.19
    c = [0.0, 0.38, 0.3878509998321533, 0.4839718937873840, 0.4570477008819580, 1.0, 1.0, 1.0]
    d = [gamma, -0.1823079225333714636, -0.319231832186874912, 0.3449828624725343,
         -0.377417564392089818, 0.0, 0.0, 0.0]
    dense = [
        [27.354592673333357, -6.925207756232857, 26.40037733258859, 0.5635230501052979,
         -4.699151156849391, -1.6008677469422725, -1.5306074446748028, -1.3929872940716344],
        [44.19024239501722, 1.3677947663381929e-13, 202.93261852171622, -35.5669339789154,
         -181.91095152160645, 3.4116351403665033, 2.5793540257308067, 2.2435122582734066],
        [-44.0988150021747, -5.755396159656812e-13, -181.26175034586677, 56.99302194811676,
         183.21182741427398, -7.480257918273637, -5.792426076169686, -5.32503859794143],
    ]
    return RosenbrockTableau(gamma, a, C, c, d, b, dense)


RODAS5 = _rodas5_tableau()


class RodasInterpolation(diffrax.AbstractLocalInterpolation):
    """The Rodas continuous extension: y(θ) = (1−θ)y0 + θ(y1 + (1−θ)(K1 + θ(K2 + θK3)))."""

    t0: ArrayLike
    t1: ArrayLike
    y0: object
    y1: object
    k: object  # pytree like y, each leaf with a leading axis of 3

    def evaluate(self, t0, t1=None, left=True):
        del left
        if t1 is not None:
            return tree_evaluate(lambda a, b: b - a, self.evaluate(t0), self.evaluate(t1))
        theta = unit_interval(self.t0, t0, self.t1)

        def leaf(y0, y1, k):
            inner = k[0] + theta * (k[1] + theta * k[2])
            return (1 - theta) * y0 + theta * (y1 + (1 - theta) * inner)

        return tree_evaluate(leaf, self.y0, self.y1, self.k)


class Rodas5(diffrax.AbstractAdaptiveSolver):
    """Rodas5: a Rosenbrock method of order 5 with an embedded 4th-order error estimate.

    For stiff ODEs (chemistry, relaxation oscillators, discretised diffusion) where
    implicit Runge–Kutta methods spend their time in Newton iterations. Stiffly accurate and
    L-stable; the Jacobian is computed exactly by forward-mode autodiff at every step. Use
    with an adaptive controller, e.g.
    `diffrax.diffeqsolve(diffrax.ODETerm(f), Rodas5(), t0, t1, dt0, y0,
    stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-10))`.

    Works with any pytree state (flattened internally; the cost is one n×n LU per step) and
    with non-autonomous fields (∂f/∂t enters each stage). ODE terms only.
    """

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = RodasInterpolation
    tableau: ClassVar[RosenbrockTableau] = RODAS5

    def order(self, terms):
        return 5

    def init(self, terms, t0, t1, y0, args):
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        tab = self.tableau
        field = FlatField(terms, y0, args)
        y0_flat = field.y0
        dtype = y0_flat.dtype
        h = jnp.asarray(t1 - t0, dtype=dtype)
        # A zero-length step (a batched solve whose member has finished runs on, its result
        # discarded) would divide by zero, and the infinities would turn into NaN gradients
        # even through the discarded branch: give it a tiny step and return y0.
        empty = h == 0
        h = jnp.where(empty, jnp.finfo(dtype).eps * jnp.maximum(1.0, jnp.abs(t0)), h)
        f0, jac, dfdt = field.with_jacobian(t0, y0_flat)
        n = y0_flat.shape[0]
        lu = jsl.lu_factor(jnp.eye(n, dtype=dtype) / (tab.gamma * h) - jac)

        ks = []
        for i in range(tab.stages):
            if i == 0:
                f_i = f0
            else:
                y_i = y0_flat + sum(tab.a[i, j] * ks[j] for j in range(i) if tab.a[i, j] != 0)
                f_i = field(t0 + tab.c[i] * h, y_i)
            rhs = f_i + sum(tab.C[i, j] / h * ks[j] for j in range(i))
            if tab.d[i] != 0:
                rhs = rhs + (tab.d[i] * h) * dfdt
            ks.append(jsl.lu_solve(lu, rhs))
        k = jnp.stack(ks)

        y1_flat = jnp.where(empty, y0_flat, y0_flat + jnp.asarray(tab.b, dtype) @ k)
        error_flat = jnp.where(empty, 0.0, ks[-1])
        dense_k = jnp.asarray(tab.dense, dtype) @ k
        y1 = field.unravel(y1_flat)
        dense_info = dict(y0=y0, y1=y1, k=field.unravel_stack(dense_k))
        return y1, field.unravel(error_flat), dense_info, None, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)
