"""Hessian spectra of an objective: dense, Lanczos for extreme eigenpairs, and stochastic density.

Three algorithms, chosen by size:
  * dense: the whole Hessian (`ol.hessian`) and `numpy.linalg.eigh`, for small models;
  * Lanczos with full reorthogonalisation on Hessian-vector products (`ol.hvp`): the largest
    and/or smallest eigenpairs of models of any size, stopping when each wanted Ritz pair's
    residual is below `tol` relative to its eigenvalue;
  * Hutchinson's trace estimate and stochastic Lanczos quadrature (SLQ) for the eigenvalue
    density of large models (100k+ parameters): a few random probes, each a short Lanczos run;
    the probes' HVPs form one batch, vmapped and split across all devices (of every process,
    after `odelab.distributed.initialize`; the dense and Lanczos parts run whole in each).
"""

from __future__ import annotations

import dataclasses
import html
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._errors import InputError, unknown_name
from .._inputs import as_params, check_step, check_tolerance
from ..derivatives import flat_names, hessian, hvp, split_params
from .fields import map_batched

WHICH = ("largest", "smallest", "both")
DENSE_LIMIT = 400  # up to this many parameters the dense Hessian is the cheaper exact route
REORTH_BUDGET_BYTES = 512 * 2**20  # SLQ keeps every probe's basis for reorthogonalisation


# --------------------------------------------------------------------------------------------
# the result
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Spectrum:
    """Eigenvalues (descending) and eigenvectors of a Hessian, with parameter names.

    eigenvalues: the computed ones (all for dense, the wanted extremes for Lanczos).
    eigenvectors: (n_params, len(eigenvalues)), column i belongs to eigenvalues[i]; rows follow
      `names` (the flattened parameters, as `ol.flat_names` gives them). None for density-only.
    condition_number: max|λ| / min|λ| over the computed eigenvalues (with which="both" or dense,
      an estimate of the Hessian's condition number).
    trace / trace_stderr: Hutchinson's estimate of tr(H) and its standard error (density=True).
    density_grid / density: the SLQ eigenvalue density (integrates to 1) on a grid.
    hvps: Hessian-vector products used (0 for dense).
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray | None
    names: list[str]
    algorithm: str
    hvps: int = 0
    residuals: np.ndarray | None = None
    converged: bool = True
    trace: float | None = None
    trace_stderr: float | None = None
    density_grid: np.ndarray | None = None
    density: np.ndarray | None = None
    seconds: float = 0.0

    @property
    def n_params(self) -> int:
        """The number of scalar parameters (the Hessian's size)."""
        return len(self.names)

    @property
    def condition_number(self) -> float:
        """max|λ| / min|λ| over the computed eigenvalues (inf if one is zero, nan if none)."""
        lam = np.abs(self.eigenvalues)
        if lam.size == 0:
            return float("nan")
        smallest = np.min(lam)
        return float(np.max(lam) / smallest) if smallest > 0 else float("inf")

    def directions(self, i: int = 0, top: int = 5) -> list[tuple[str, float]]:
        """The `top` parameters with the largest weight in eigenvector `i`: (name, component)."""
        if self.eigenvectors is None:
            raise InputError("This spectrum has no eigenvectors (it was computed as a density).")
        v = self.eigenvectors[:, i]
        order = np.argsort(-np.abs(v))[:top]
        return [(self.names[j], float(v[j])) for j in order]

    def to_dict(self) -> dict[str, Any]:
        """The spectrum as plain lists and numbers, ready for `json.dumps`."""
        out: dict[str, Any] = {
            "eigenvalues": self.eigenvalues.tolist(), "names": list(self.names),
            "algorithm": self.algorithm, "hvps": self.hvps,
            "condition_number": self.condition_number, "trace": self.trace,
        }
        if self.density is not None:
            out["density_grid"] = self.density_grid.tolist()
            out["density"] = self.density.tolist()
        return out

    def __repr__(self) -> str:
        shown = ", ".join(f"{v:.4g}" for v in self.eigenvalues[:6])
        more = ", …" if self.eigenvalues.size > 6 else ""
        return (f"Spectrum({self.algorithm}, {self.n_params} params, eigenvalues [{shown}{more}], "
                f"condition {self.condition_number:.3g}, {self.hvps} HVPs)")

    def _repr_html_(self) -> str:
        lam = self.eigenvalues
        picks = list(range(min(5, lam.size))) + list(range(max(5, lam.size - 5), lam.size))
        rows = []
        for i in picks:
            lead = ""
            if self.eigenvectors is not None:
                lead = ", ".join(f"{html.escape(n)} ({c:+.2f})" for n, c in self.directions(i, 3))
            rows.append(f"<tr><td>{i}</td><td>{lam[i]:.6g}</td><td>{lead}</td></tr>")
        extra = ""
        if self.trace is not None:
            extra = f"; trace ≈ {self.trace:.4g} ± {self.trace_stderr:.2g}"
        return (
            f"<div><b>Spectrum</b> ({html.escape(self.algorithm)}) of a {self.n_params}-parameter "
            f"Hessian: condition number {self.condition_number:.3g}, {self.hvps} HVPs, "
            f"{self.seconds:.2f} s{extra}<table><thead><tr><th>#</th><th>eigenvalue</th>"
            f"<th>leading parameters</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        )


# --------------------------------------------------------------------------------------------
# Hessian-vector products on flat vectors
# --------------------------------------------------------------------------------------------
@eqx.filter_jit
def _flat_hvp(fun, params, method, solver, rtol, atol, vector):
    diff, _ = eqx.partition(params, eqx.is_inexact_array)
    _, unravel = ravel_pytree(diff)
    out = hvp(fun, params, unravel(vector), method, solver=solver, rtol=rtol, atol=atol)
    return ravel_pytree(eqx.partition(out, eqx.is_inexact_array)[0])[0]


@eqx.filter_jit
def _flat_hvp_batch(fun, params, method, solver, rtol, atol, vectors):
    one = lambda v: _flat_hvp(fun, params, method, solver, rtol, atol, v)  # noqa: E731
    return jax.vmap(one)(vectors)


class _Operator:
    """H as a function on flat numpy vectors, counting products."""

    def __init__(self, fun, params, method, solver, rtol, atol):
        # floats become arrays: under jit they must be traced, not baked in as constants
        self.args = (fun, as_params(params), method, solver,
                     None if rtol is None else jnp.asarray(float(rtol)),
                     None if atol is None else jnp.asarray(float(atol)))
        self.count = 0

    def __call__(self, v: np.ndarray) -> np.ndarray:
        self.count += 1
        return np.array(_flat_hvp(*self.args, jnp.asarray(v)))  # a writable copy

    def batch(self, vs: np.ndarray) -> np.ndarray:
        """H applied to each row of `vs`, the rows split across devices."""
        self.count += vs.shape[0]
        return np.array(map_batched(lambda c: _flat_hvp_batch(*self.args, c), jnp.asarray(vs),
                                    desc="batch of Hessian-vector products"))


# --------------------------------------------------------------------------------------------
# Lanczos
# --------------------------------------------------------------------------------------------
def _wanted(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices (into ascending Ritz values) of the ones asked for."""
    m = theta.size
    top = np.arange(max(0, m - k), m)
    bottom = np.arange(0, min(k, m))
    if which == "largest":
        return top
    if which == "smallest":
        return bottom
    return np.unique(np.concatenate([bottom, top]))


def _ritz(alphas: list[float], betas: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of the Lanczos tridiagonal matrix."""
    from scipy.linalg import eigh_tridiagonal

    return eigh_tridiagonal(np.asarray(alphas), np.asarray(betas[:len(alphas) - 1]))


def _lanczos(op: Callable[[np.ndarray], np.ndarray], n: int, k: int, which: str, steps: int,
             tol: float, rng: np.random.Generator, check_every: int = 4):
    """Extreme eigenpairs by Lanczos with full reorthogonalisation: (λ, V, residuals, converged)."""
    basis = np.zeros((steps + 1, n))
    alphas: list[float] = []
    betas: list[float] = []
    q = rng.standard_normal(n)
    basis[0] = q / np.linalg.norm(q)
    converged = False
    needed = min(2 * k if which == "both" else k, n)
    for j in range(steps):
        w = op(basis[j])
        alphas.append(float(basis[j] @ w))
        # orthogonalise against the whole basis twice ("twice is enough", Kahan–Parlett)
        for _ in range(2):
            w -= basis[:j + 1].T @ (basis[:j + 1] @ w)
        beta = float(np.linalg.norm(w))
        betas.append(beta)
        last = j == steps - 1
        if beta <= 1e-12 * max(np.max(np.abs(alphas)), 1e-300):
            converged = True  # an invariant subspace: the Ritz values are exact
            break
        if len(alphas) >= needed and (j % check_every == 0 or last):
            theta, s = _ritz(alphas, betas)
            idx = _wanted(theta, k, which)
            scale = np.maximum(np.abs(theta[idx]), np.max(np.abs(theta)) * 1e-12)
            if np.all(beta * np.abs(s[-1, idx]) <= tol * scale):
                converged = True
                break
        basis[j + 1] = w / beta
    theta, s = _ritz(alphas, betas)
    idx = _wanted(theta, k, which)
    residuals = betas[len(alphas) - 1] * np.abs(s[-1, idx])
    vectors = basis[:len(alphas)].T @ s[:, idx]
    order = np.argsort(-theta[idx])
    return theta[idx][order], vectors[:, order], residuals[order], converged


# --------------------------------------------------------------------------------------------
# stochastic Lanczos quadrature
# --------------------------------------------------------------------------------------------
def _slq(op: _Operator, n: int, probes: int, steps: int, rng: np.random.Generator,
         sigma: float | None, grid_points: int):
    """(grid, density, trace, trace_stderr, extreme Ritz values) from Rademacher probes."""
    steps = min(steps, n)
    v = rng.choice([-1.0, 1.0], size=(probes, n))
    reorth = probes * (steps + 1) * n * 8 <= REORTH_BUDGET_BYTES
    basis = np.zeros((probes, steps + 1, n)) if reorth else None
    q = v / np.sqrt(n)
    prev = np.zeros_like(q)
    if reorth:
        basis[:, 0] = q
    alphas = np.zeros((probes, steps))
    betas = np.zeros((probes, steps))
    m = steps
    for j in range(steps):
        w = op.batch(q)
        alphas[:, j] = np.einsum("pn,pn->p", q, w)
        w = w - alphas[:, j, None] * q - (betas[:, j - 1, None] * prev if j else 0.0)
        if reorth:
            for _ in range(2):
                coef = np.einsum("pkn,pn->pk", basis[:, :j + 1], w)
                w -= np.einsum("pkn,pk->pn", basis[:, :j + 1], coef)
        betas[:, j] = np.linalg.norm(w, axis=1)
        if np.any(betas[:, j] <= 1e-12 * np.max(np.abs(alphas[:, :j + 1]))):
            m = j + 1  # an invariant subspace: the quadrature is exact with these nodes
            break
        prev, q = q, w / betas[:, j, None]
        if reorth:
            basis[:, j + 1] = q
    nodes, weights = [], []
    for p in range(probes):
        theta, s = _ritz(list(alphas[p, :m]), list(betas[p, :m]))
        nodes.append(theta)
        weights.append(s[0] ** 2)
    nodes_all, weights_all = np.concatenate(nodes), np.concatenate(weights) / probes
    # vᵀHv / n per probe is alphas[:, 0] (q = v/√n): Hutchinson's estimator, for free
    samples = n * alphas[:, 0]
    trace = float(np.mean(samples))
    stderr = float(np.std(samples, ddof=1) / np.sqrt(probes)) if probes > 1 else float("nan")
    lo, hi = float(nodes_all.min()), float(nodes_all.max())
    width = sigma if sigma is not None else max((hi - lo) / 100.0, 1e-12 * max(abs(hi), 1.0))
    grid = np.linspace(lo - 4 * width, hi + 4 * width, grid_points)
    kernel = np.exp(-0.5 * ((grid[:, None] - nodes_all[None]) / width) ** 2)
    density = kernel @ weights_all / (width * np.sqrt(2 * np.pi))
    return grid, density, trace, stderr, np.sort(nodes_all)[::-1]


# --------------------------------------------------------------------------------------------
# the public function
# --------------------------------------------------------------------------------------------
def hessian_spectrum(fun: Callable, params: Any, k: int | None = None, method: Any = "auto", *,
                     which: str = "both", algorithm: str = "auto",
                     lanczos_steps: int | None = None, tol: float = 1e-8, density: bool = False,
                     probes: int = 8, density_steps: int = 40, sigma: float | None = None,
                     grid_points: int = 256, solver: Any = None, rtol: Any = None,
                     atol: Any = None, seed: int = 0) -> Spectrum:
    """Eigenvalues and eigenvectors of the Hessian of scalar `fun` at `params`.

    k: how many eigenpairs from each end `which` names ("largest", "smallest" or "both"); None
      means all of them for a dense spectrum and 6 for Lanczos.
    method, solver, rtol, atol: as for `ol.hvp` / `ol.hessian`, applied to the solves in `fun`.
    algorithm: "dense" (the full Hessian, exact; up to a few thousand parameters), "lanczos"
      (HVPs only, extreme eigenpairs to relative residual `tol`, at most `lanczos_steps`
      products), or "auto" (dense up to 400 parameters, else Lanczos).
    density: also estimate the eigenvalue density by stochastic Lanczos quadrature with
      `probes` random probes of `density_steps` steps each, and Hutchinson's trace estimate.
      The probes' HVPs run as one batch split across all devices, so this scales to models with
      hundreds of thousands of parameters. `sigma` is the Gaussian smoothing width.

    Eigenvectors are mapped back to parameter names: ``spectrum.directions(0)`` lists the
    parameters that dominate the stiffest direction.

        >>> spec = ol.hessian_spectrum(loss, sys.params)
        >>> spec.eigenvalues, spec.condition_number, spec.directions(0)
    """
    start = time.perf_counter()
    if not callable(fun):
        raise InputError(f"`fun` must be a function of the parameters; got {type(fun).__name__}.")
    if which not in WHICH:
        raise unknown_name("which", which, WHICH)
    if algorithm not in ("auto", "dense", "lanczos"):
        raise unknown_name("algorithm", algorithm, ("auto", "dense", "lanczos"))
    diff, _ = split_params(params)
    names = flat_names(params)
    n = len(names)
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        raise InputError(f"`k={k!r}` must be a positive whole number of eigenpairs.")
    if k is not None and k > n:
        raise InputError(f"`k={k}` asks for more eigenpairs than the {n} parameters have.")
    if isinstance(probes, bool) or probes < 2:
        raise InputError(f"`probes={probes!r}` must be at least 2 (the trace error needs two).")
    tol = check_tolerance("tol", tol)
    if sigma is not None:
        sigma = check_step("sigma", sigma, example="sigma=0.01 (a width in eigenvalue units)")
    if algorithm == "auto":
        algorithm = "dense" if n <= DENSE_LIMIT else "lanczos"
    rng = np.random.default_rng(seed)
    op = _Operator(fun, params, method, solver, rtol, atol)
    fields: dict[str, Any] = {}
    if algorithm == "dense":
        h = np.asarray(hessian(fun, params, method, solver=solver, rtol=rtol, atol=atol))
        lam, vecs = np.linalg.eigh(0.5 * (h + h.T))
        idx = np.arange(n) if k is None else _wanted(lam, k, which)
        order = idx[np.argsort(-lam[idx])]
        fields.update(eigenvalues=lam[order], eigenvectors=vecs[:, order],
                      residuals=np.zeros(order.size), converged=True)
    else:
        k = 6 if k is None else k
        k = min(k, n)
        steps = min(n, lanczos_steps or max(300, 4 * k))
        lam, vecs, res, ok = _lanczos(op, n, k, which, steps, tol, rng)
        fields.update(eigenvalues=lam, eigenvectors=vecs, residuals=res, converged=ok)
    if density:
        grid, dens, trace, stderr, _ = _slq(op, n, probes, density_steps, rng, sigma, grid_points)
        fields.update(density_grid=grid, density=dens, trace=trace, trace_stderr=stderr)
    del diff
    return Spectrum(names=names, algorithm=algorithm, hvps=op.count,
                    seconds=time.perf_counter() - start, **fields)
