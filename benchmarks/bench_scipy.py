"""odelab against scipy: forward solves (non-stiff) and gradients against scipy finite differences.

Same problem, same tolerances; each side's time is the median over repeats after a warm-up
(odelab's first call compiles; that one-off cost is reported separately by bench_solve).
"""

from __future__ import annotations

import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

import odelab as ol


def _median(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _lorenz_np(params):
    s, r, b = params

    def f(t, y):
        return [s * (y[1] - y[0]), y[0] * (r - y[2]) - y[1], y[0] * y[1] - b * y[2]]

    return f


def run(quick: bool = False) -> list[dict]:
    t1 = 2.0 if quick else 10.0
    n_save = 100 if quick else 500
    repeats = 3 if quick else 10
    lorenz = ol.gallery.lorenz(t_span=(0.0, t1))
    names = sorted(lorenz.params)  # beta, rho, sigma
    assert names == ["beta", "rho", "sigma"]
    p0 = np.array([float(lorenz.params[k]) for k in names])
    ts = np.linspace(0.0, t1, n_save)
    rows = []
    for rtol in (1e-6, 1e-9):
        atol = rtol * 1e-2
        scipy_t = _median(lambda r=rtol, a=atol: solve_ivp(
            _lorenz_np(p0[[2, 1, 0]]), (0.0, t1), lorenz.y0, method="DOP853", t_eval=ts, rtol=r,
            atol=a).y, repeats)
        odelab_t = _median(lambda r=rtol, a=atol: ol.solve(
            lorenz, saveat=n_save, solver="dopri8", rtol=r, atol=a).ys, repeats)
        rows.append({"benchmark": f"Lorenz solve, rtol {rtol:g}: odelab dopri8 vs scipy DOP853",
                     "scipy_s": scipy_t, "odelab_s": odelab_t, "ratio": odelab_t / scipy_t})

    # gradient of a trajectory loss: odelab's adjoint vs central differences over scipy solves
    def scipy_loss(p):
        sol = solve_ivp(_lorenz_np(p[[2, 1, 0]]), (0.0, t1), lorenz.y0, method="DOP853",
                        t_eval=ts, rtol=1e-9, atol=1e-11)
        return float(np.mean(sol.y[0] ** 2))

    def scipy_fd():
        g = np.zeros(3)
        for i in range(3):
            h = 1e-5 * max(1.0, abs(p0[i]))
            e = np.zeros(3)
            e[i] = h
            g[i] = (scipy_loss(p0 + e) - scipy_loss(p0 - e)) / (2 * h)
        return g

    def loss(p):
        return jnp.mean(ol.solve(lorenz, params=p, saveat=n_save, solver="dopri8").ys[:, 0] ** 2)

    params = {k: float(lorenz.params[k]) for k in names}
    odelab_g = _median(lambda: ol.gradient(loss, params, method="checkpoint", rtol=1e-9,
                                           atol=1e-11)["rho"], repeats)
    fd_g = _median(scipy_fd, 1 if quick else 3)
    exact = ol.gradient(loss, params, method="direct", rtol=1e-12, atol=1e-14)
    ours = ol.gradient(loss, params, method="checkpoint", rtol=1e-9, atol=1e-11)
    fd = scipy_fd()
    err = lambda g: max(abs(float(g[i]) - float(exact[k])) / abs(float(exact[k]))
                        for i, k in enumerate(names))
    rows.append({"benchmark": "Lorenz gradient (3 params): odelab checkpoint vs scipy central FD",
                 "scipy_s": fd_g, "odelab_s": odelab_g, "ratio": odelab_g / fd_g,
                 "odelab_rel_error": err([ours[k] for k in names]), "scipy_fd_rel_error": err(fd)})
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
