"""Phase-plane geometry: direction field, nullclines and equilibria with their stability.

Pure numpy/JAX functions of a vector field, used by the explorer's phase portrait and testable
on their own. The plane is spanned by two states `i` and `j`; the other states are held at the
values in `base` (the current initial state), so for systems with more than two states the
picture is a slice.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

GRID = 61  # points per axis for the vector field; arrows use every ARROW_STRIDE-th point
ARROW_STRIDE = 4


@eqx.filter_jit
def _field_on_grid(f, t, base, i: int, j: int, xs, ys, params):
    """(dx, dy) of the vector field on the grid xs × ys, shaped (len(ys), len(xs))."""
    X, Y = jnp.meshgrid(xs, ys)

    def at(x, y):
        d = f(t, base.at[i].set(x).at[j].set(y), params)
        return d[i], d[j]

    dx, dy = jax.vmap(at)(X.ravel(), Y.ravel())
    return dx.reshape(X.shape), dy.reshape(X.shape)


@dataclasses.dataclass(frozen=True)
class PlaneField:
    """The vector field sampled on a grid of the (state i, state j) plane."""

    xs: np.ndarray
    ys: np.ndarray
    dx: np.ndarray  # (len(ys), len(xs))
    dy: np.ndarray


def sample_field(f, t: float, base: Any, i: int, j: int, x_range, y_range, params,
                 n: int = GRID) -> PlaneField:
    """The components i and j of f on an n × n grid over x_range × y_range."""
    xs = np.linspace(*x_range, n)
    ys = np.linspace(*y_range, n)
    dx, dy = _field_on_grid(f, jnp.asarray(t, dtype=float), jnp.asarray(base, dtype=float), i, j,
                            jnp.asarray(xs), jnp.asarray(ys), params)
    return PlaneField(xs, ys, np.asarray(dx), np.asarray(dy))


def direction_arrows(field: PlaneField, stride: int = ARROW_STRIDE) -> dict[str, np.ndarray]:
    """Arrow segments (x0, y0, x1, y1) of equal length showing the direction of the flow."""
    xs, ys = field.xs[::stride], field.ys[::stride]
    dx, dy = field.dx[::stride, ::stride], field.dy[::stride, ::stride]
    X, Y = np.meshgrid(xs, ys)
    # scale each direction to the cell size so arrows never overlap; keep magnitude as color
    sx = (xs[-1] - xs[0]) / max(len(xs) - 1, 1) * 0.8
    sy = (ys[-1] - ys[0]) / max(len(ys) - 1, 1) * 0.8
    u, v = dx / sx, dy / sy
    norm = np.hypot(u, v)
    ok = np.isfinite(norm) & (norm > 0)
    norm = np.where(ok, norm, 1.0)
    ux, uy = np.where(ok, dx / norm, 0.0), np.where(ok, dy / norm, 0.0)
    speed = np.where(ok, np.hypot(dx, dy), 0.0)
    return dict(x0=X.ravel(), y0=Y.ravel(), x1=(X + ux).ravel(), y1=(Y + uy).ravel(),
                speed=speed.ravel())


def zero_contour(values: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> dict[str, np.ndarray]:
    """Segments (x0, y0, x1, y1) of the curve values == 0 by marching squares.

    `values` has shape (len(ys), len(xs)). Each grid cell whose corners change sign contributes
    one segment (two at a saddle cell, split by the sign of the cell's mean); crossing points are
    placed by linear interpolation along the cell edges. Cells touching NaN are skipped.
    """
    v = np.asarray(values, dtype=float)
    v00, v10, v01, v11 = v[:-1, :-1], v[:-1, 1:], v[1:, :-1], v[1:, 1:]
    xl, xh = xs[:-1][None, :], xs[1:][None, :]
    yl, yh = ys[:-1][:, None], ys[1:][:, None]
    shape = v00.shape

    def crossing(a, b):
        crossed = (a >= 0) != (b >= 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(crossed, a / (a - b), np.nan)
        return crossed, frac

    # edge order: bottom, right, top, left
    cb, fb = crossing(v00, v10)
    cr, fr = crossing(v10, v11)
    ct, ft = crossing(v01, v11)
    cl, fl = crossing(v00, v01)
    px = np.stack([np.broadcast_to(xl + fb * (xh - xl), shape), np.broadcast_to(xh, shape),
                   np.broadcast_to(xl + ft * (xh - xl), shape), np.broadcast_to(xl, shape)])
    py = np.stack([np.broadcast_to(yl, shape), np.broadcast_to(yl + fr * (yh - yl), shape),
                   np.broadcast_to(yh, shape), np.broadcast_to(yl + fl * (yh - yl), shape)])
    crossed = np.stack([cb, cr, ct, cl])
    finite = np.isfinite(v00) & np.isfinite(v10) & np.isfinite(v01) & np.isfinite(v11)
    count = crossed.sum(axis=0) * finite

    segments = []
    two = count == 2
    if two.any():
        order = np.argsort(~crossed[:, two], axis=0, kind="stable")[:2]  # the two crossed edges
        cols = np.arange(order.shape[1])
        sx, sy = px[:, two], py[:, two]
        segments.append((sx[order[0], cols], sy[order[0], cols],
                         sx[order[1], cols], sy[order[1], cols]))
    four = count == 4
    if four.any():
        mean = (v00 + v10 + v01 + v11)[four] / 4
        same = (mean >= 0) == (v00[four] >= 0)
        sx, sy = px[:, four], py[:, four]
        # centre like corner 00: it joins 00 and 11, so the curve cuts off corners 10 (edges
        # bottom, right) and 01 (top, left); otherwise it cuts off 00 (bottom, left) and 11
        first = np.zeros(same.shape, dtype=int), np.where(same, 1, 3)
        second = np.where(same, 3, 2), np.where(same, 2, 1)
        cols = np.arange(sx.shape[1])
        for a, b in (first, second):
            segments.append((sx[a, cols], sy[a, cols], sx[b, cols], sy[b, cols]))
    if not segments:
        empty = np.zeros(0)
        return dict(x0=empty, y0=empty, x1=empty, y1=empty)
    x0, y0, x1, y1 = (np.concatenate(parts) for parts in zip(*segments))
    return dict(x0=x0, y0=y0, x1=x1, y1=y1)


# --------------------------------------------------------------------------------------------
# time dependence (forced systems)
# --------------------------------------------------------------------------------------------
@eqx.filter_jit
def _time_rates(f, ts, points, params):
    """|∂f/∂t| and |f| at every (t, point): shape (len(ts), len(points), n_states) each."""

    def at(t, y):
        value, rate = jax.jvp(lambda s: f(s, y, params), (t,), (jnp.ones_like(t),))
        return jnp.abs(rate), jnp.abs(value)

    return jax.vmap(lambda t: jax.vmap(lambda y: at(t, y))(points))(ts)


def depends_on_time(f, t_span, base: Any, i: int, j: int, x_range, y_range, params,
                    n: int = 5, rtol: float = 1e-12) -> bool:
    """Whether f(t, y, p) changes with t (a forced, non-autonomous system) in the (i, j) plane.

    ∂f/∂t (exact, by forward-mode differentiation) on an n × n grid of the plane at n times over
    `t_span`; an autonomous field gives exact zeros. Its phase plane is then a snapshot at one
    time, and the fixed points of that snapshot are not equilibria of the system.
    """
    base = np.asarray(base, dtype=float)
    X, Y = np.meshgrid(np.linspace(*x_range, n), np.linspace(*y_range, n))
    points = np.tile(base, (X.size, 1))
    points[:, i], points[:, j] = X.ravel(), Y.ravel()
    t0, t1 = (float(v) for v in t_span)
    ts = np.linspace(t0, t1, n)
    rates, values = _time_rates(f, jnp.asarray(ts), jnp.asarray(points), params)
    rates, values = np.asarray(rates), np.asarray(values)
    duration = max(abs(t1 - t0), 1e-300)
    scale = float(np.max(values[np.isfinite(values)], initial=0.0)) + 1e-300
    rates = rates[np.isfinite(rates)]
    return bool(rates.size) and float(np.max(rates)) * duration > rtol * scale


# --------------------------------------------------------------------------------------------
# equilibria
# --------------------------------------------------------------------------------------------
NEWTON_ITERATIONS = 40


@eqx.filter_jit
def _newton(f, t, seeds, params):
    """Newton's method on f(t, y, p) = 0 from every seed; returns (roots, residuals, Jacobians)."""
    jac = jax.jacfwd(lambda y: f(t, y, params))

    def one(y):
        def step(y, _):
            dy = jnp.linalg.solve(jac(y), f(t, y, params))
            # a singular Jacobian gives inf/NaN: stay put, that seed is then discarded
            return jnp.where(jnp.all(jnp.isfinite(dy)), y - dy, y), None

        y, _ = jax.lax.scan(step, y, None, length=NEWTON_ITERATIONS)
        return y, jnp.linalg.norm(f(t, y, params)), jac(y)

    return jax.vmap(one)(seeds)


@dataclasses.dataclass(frozen=True)
class Equilibrium:
    """A fixed point y* with f(y*) = 0, its Jacobian's eigenvalues and what they imply."""

    state: np.ndarray
    eigenvalues: np.ndarray
    kind: str  # e.g. "stable focus", "saddle", "center"
    stable: bool


def classify(eigenvalues: np.ndarray, scale: float = 1.0) -> tuple[str, bool]:
    """Name the fixed point from the Jacobian's eigenvalues (linear stability)."""
    re, im = eigenvalues.real, eigenvalues.imag
    tol = 1e-7 * max(scale, float(np.max(np.abs(eigenvalues), initial=0.0)), 1e-300)
    rotating = np.any(np.abs(im) > tol)
    if np.all(re < -tol):
        return ("stable focus" if rotating else "stable node"), True
    if np.all(np.abs(re) <= tol):
        return ("center" if rotating else "degenerate"), False
    if np.any(re > tol) and np.any(re < -tol):
        return "saddle", False
    if np.all(re > tol):
        return ("unstable focus" if rotating else "unstable node"), False
    return "non-hyperbolic", False


def find_equilibria(f, t: float, base: Any, i: int, j: int, x_range, y_range, params,
                    seeds_per_axis: int = 7) -> list[Equilibrium]:
    """Equilibria found by Newton's method from a grid of seeds in the (i, j) plane.

    Seeds vary states i and j over the ranges; the other states start at `base`. Roots are kept
    when the residual is tiny, deduplicated, and classified by the eigenvalues of the Jacobian.
    """
    base = np.asarray(base, dtype=float)
    gx = np.linspace(*x_range, seeds_per_axis)
    gy = np.linspace(*y_range, seeds_per_axis)
    X, Y = np.meshgrid(gx, gy)
    seeds = np.tile(base, (X.size, 1))
    seeds[:, i], seeds[:, j] = X.ravel(), Y.ravel()
    roots, residuals, jacobians = _newton(f, jnp.asarray(t, dtype=float), jnp.asarray(seeds),
                                          params)
    roots, residuals, jacobians = map(np.asarray, (roots, residuals, jacobians))
    span = max(np.ptp(gx), np.ptp(gy), 1.0)
    found: list[Equilibrium] = []
    for y, r, J in zip(roots, residuals, jacobians):
        if not (np.all(np.isfinite(y)) and np.isfinite(r)):
            continue
        if r > 1e-8 * (1.0 + np.max(np.abs(y))):
            continue
        if any(np.max(np.abs(y - e.state)) < 1e-6 * span for e in found):
            continue
        eig = np.linalg.eigvals(J)
        kind, stable = classify(eig, scale=float(np.max(np.abs(J), initial=1.0)))
        found.append(Equilibrium(state=y, eigenvalues=eig, kind=kind, stable=stable))
    return found
