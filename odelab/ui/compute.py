"""What the explorer computes, without any widgets: solves, gradients, fields and spectra.

`Settings` is a frozen snapshot of the explorer's controls; `Engine` turns a snapshot into
numbers with odelab's public functions. The static choices (solver, gradient method, number of
save points) select a compiled program; everything else (parameter values, y0, time span,
tolerances) is passed as traced values, so moving a slider reuses the compiled program.
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from .._compilations import compile_count
from .._errors import InputError, OdelabError
from .._inputs import as_params
from ..analysis.fields import gradient_field
from ..derivatives import (
    difference_estimate,
    flat_names,
    forget,
    hessian,
    raise_failures,
    value_and_gradient,
)
from ..solve import recording, solve
from ..system import Objective
from . import phase

REFERENCE_RTOL = 1e-10  # the reference gradient's tolerance ...
REFERENCE_CHECK_RTOL = 1e-9  # ... and the looser one that estimates its error
REFERENCE_ATOL = 1e-12
CROSS_CHECK = "finite-difference"  # as a reference: finite differences, labelled a cross-check
MAX_HESSIAN_PARAMETERS = 60


@dataclasses.dataclass(frozen=True)
class Settings:
    """A snapshot of everything the explorer's controls say (hashable, immutable)."""

    values: tuple[tuple[str, float], ...]
    y0: tuple[float, ...]
    t0: float
    t1: float
    n_save: int
    solver: str
    method: str
    rtol: float
    atol: float
    reference: str = "auto"
    x_state: int = 0
    y_state: int = 1


@dataclasses.dataclass
class Timed:
    """A computed value with its wall time and whether it compiled something new."""

    value: Any
    seconds: float
    compiled: bool


def timed(fn: Callable[[], Any]) -> Timed:
    before = compile_count()
    start = time.perf_counter()
    value = jax.block_until_ready(fn())
    return Timed(value, time.perf_counter() - start, compile_count() > before)


@dataclasses.dataclass
class Trajectory:
    ts: np.ndarray
    ys: np.ndarray
    stats: dict[str, int]
    message: str
    solver: str = ""  # the solver that ran ("auto" resolved)


@dataclasses.dataclass
class GradientResult:
    """A gradient by name; as a reference it carries its own error estimate and a label."""

    names: list[str]
    loss: float
    gradient: np.ndarray
    reference: np.ndarray | None = None
    error: np.ndarray | None = None  # this gradient's own error estimate, per name
    label: str = ""  # how it was computed (shown beside a reference)
    reference_error: np.ndarray | None = None
    reference_label: str = ""

    def compare_with(self, reference: GradientResult) -> None:
        """Show `reference` (a result of `Engine.reference_gradient`) beside this gradient."""
        self.reference = reference.gradient
        self.reference_error, self.reference_label = reference.error, reference.label

    @property
    def relative_error(self) -> np.ndarray | None:
        if self.reference is None:
            return None
        scale = np.maximum(np.abs(self.reference), 1e-12 * max(np.max(np.abs(self.reference)),
                                                                  1e-300))
        return np.abs(self.gradient - self.reference) / scale


@dataclasses.dataclass
class PhaseResult:
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    arrows: dict[str, np.ndarray]
    nullclines: list[dict[str, np.ndarray]]  # one per plotted component, empty unless 2 states
    equilibria: list[phase.Equilibrium]
    note: str = ""  # what the picture is not (e.g. a forced system's snapshot at one time)


@dataclasses.dataclass
class Spectrum:
    names: list[str]
    matrix: np.ndarray
    eigenvalues: np.ndarray  # ascending
    eigenvectors: np.ndarray  # columns

    @property
    def condition_number(self) -> float:
        mags = np.abs(self.eigenvalues)
        return float(mags.max() / mags.min()) if mags.min() > 0 else float("inf")


@dataclasses.dataclass
class FieldResult:
    x_name: str
    y_name: str
    xs: np.ndarray
    ys: np.ndarray
    loss: np.ndarray  # (len(ys), len(xs))
    grad_x: np.ndarray
    grad_y: np.ndarray
    log_x: bool
    log_y: bool


def _forget_programs(losses: dict[Any, Callable]) -> None:
    for loss in list(losses.values()):
        forget(loss)
    losses.clear()


class Engine:
    """Computes the explorer's views for one Objective, keeping its loss functions stable.

    odelab caches compiled derivative programs per loss function object, so the engine builds
    each loss function once (per number of save points) and passes y0 and the time span as
    inputs rather than closing over them.
    """

    def __init__(self, objective: Objective):
        self.objective = objective
        self.system = objective.system
        self._losses: dict[Any, Callable] = {}
        self._programs: dict[Any, Callable] = {}
        # odelab's program cache keys the loss functions by what they compute and keeps what
        # they close over (the objective, the system): when the engine goes, so do they
        weakref.finalize(self, _forget_programs, self._losses)

    # -- inputs -------------------------------------------------------------------------------
    def params(self, s: Settings) -> Any:
        """The full parameters with the slider values laid over them, as float arrays.

        Arrays, not Python floats: jitted helpers treat Python floats as compile-time constants,
        so a new float value would compile a new program.
        """
        merged = self.system.merge_params(dict(s.values)) if s.values else self.system.params
        return as_params(merged, host=True)

    def inputs(self, s: Settings) -> dict[str, Any]:
        """The differentiated pytree: parameters, plus y0 and the span held fixed inside."""
        return {
            "params": self.params(s),
            "y0": jnp.asarray(s.y0, dtype=float),
            "t_span": jnp.asarray([s.t0, s.t1], dtype=float),
        }

    def _save(self, s: Settings) -> Any:
        times = self.objective.save_times
        return s.n_save if times is None else times

    # -- trajectory ---------------------------------------------------------------------------
    def trajectory(self, s: Settings, y0: Any = None) -> Timed:
        def run():
            return solve(self.system, y0=s.y0 if y0 is None else y0, params=self.params(s),
                         t_span=(s.t0, s.t1), saveat=s.n_save, solver=s.solver, rtol=s.rtol,
                         atol=s.atol)

        out = timed(run)
        sol = out.value
        ts, ys = sol.to_numpy()
        out.value = Trajectory(ts, ys, sol.stats, sol.message, sol.solver)
        return out

    # -- gradients ----------------------------------------------------------------------------
    def loss_function(self, n_save: int) -> Callable:
        """loss(q) for q = inputs(settings); one function object per save grid."""
        key = n_save if self.objective.save_times is None else "data"
        if key not in self._losses:
            system, objective = self.system, self.objective
            saveat = n_save if objective.save_times is None else objective.save_times

            def loss(q):
                # y0 and the span are inputs (so changing them does not recompile) but not
                # differentiated: the gradient views are about the parameters
                y0 = jax.lax.stop_gradient(q["y0"])
                t = jax.lax.stop_gradient(q["t_span"])
                sol = solve(system, y0=y0, params=q["params"], t_span=(t[0], t[1]),
                            saveat=saveat)
                return objective.loss(sol, q["params"])

            self._losses[key] = loss
        return self._losses[key]

    def gradient(self, s: Settings, method: str | None = None, rtol: float | None = None,
                 atol: float | None = None) -> Timed:
        """The loss and its gradient with respect to the parameters, as labelled flat arrays."""
        self.objective.check_span(s.t0, s.t1)
        program = self._gradient_program(s.n_save, method or s.method, s.solver)
        q = self.inputs(s)
        tolerances = (jnp.asarray(rtol or s.rtol, dtype=float),
                      jnp.asarray(atol or s.atol, dtype=float))
        out = timed(lambda: program(q["params"], q["y0"], q["t_span"], *tolerances))
        value, g, statuses = out.value
        raise_failures(statuses)
        names, flat = flatten_gradient(g)
        out.value = GradientResult(names, float(value), flat)
        return out

    def _gradient_program(self, n_save: int, method: str, solver: str) -> Callable:
        """(params, y0, t_span, rtol, atol) -> (loss, gradient in params, solve statuses).

        One compiled program per (save grid, method, solver): y0, the span and the tolerances
        are its traced inputs, and only the parameters are differentiated (so "auto" counts
        them alone when it chooses between forward and reverse mode).
        """
        key = ("gradient", n_save if self.objective.save_times is None else "data", method,
               solver)
        if key not in self._programs:
            loss = self.loss_function(n_save)

            def program(params, y0, t_span, rtol, atol):
                with recording() as rec:
                    value, g = value_and_gradient(
                        lambda p: loss({"params": p, "y0": y0, "t_span": t_span}), params,
                        method=method, solver=solver, rtol=rtol, atol=atol)
                return value, g, rec.entries

            self._programs[key] = eqx.filter_jit(program)
        return self._programs[key]

    def reference_gradient(self, s: Settings) -> Timed:
        """The gradient to compare the chosen method with, and its own error estimate.

        `s.reference` "auto" (or a method): an accurate method at a tight tolerance — the
        method in use when it differentiates the discrete solve exactly (its compiled program
        serves), else "auto" (forward or checkpoint) — with the error estimated from the same
        method at a 10× looser tolerance. "finite-difference": finite differences of the loss,
        labelled a cross-check, steps searched per parameter and carrying their own error
        estimate (shares no code with the AD methods; is less accurate than they are).
        """
        if s.reference == CROSS_CHECK:
            return timed(lambda: self._cross_check(s))
        method = self.reference_method(s)
        rtol = min(REFERENCE_RTOL, s.rtol)
        tight = self.gradient(s, method=method, rtol=rtol, atol=min(REFERENCE_ATOL, s.atol))
        looser = self.gradient(s, method=method, rtol=max(REFERENCE_CHECK_RTOL, rtol),
                               atol=min(REFERENCE_ATOL * 10, s.atol))
        out = tight.value
        out.error = np.abs(out.gradient - looser.value.gradient)
        out.label = f"{method} at rtol {rtol:g} (error estimated at rtol " \
                    f"{max(REFERENCE_CHECK_RTOL, rtol):g})"
        return Timed(out, tight.seconds + looser.seconds, tight.compiled or looser.compiled)

    @staticmethod
    def reference_method(s: Settings) -> str:
        """The gradient method of the reference (`s.reference` not finite differences)."""
        if s.reference != "auto":
            return s.reference
        return s.method if s.method in ("auto", "checkpoint", "direct", "forward",
                                        "forward-sensitivity") else "auto"

    def _cross_check(self, s: Settings) -> GradientResult:
        """Finite differences of the loss at the reference tolerance, with their error."""
        self.objective.check_span(s.t0, s.t1)
        params = self.params(s)
        est = difference_estimate(self.closed_loss(s), params, solver=s.solver,
                                  rtol=min(REFERENCE_RTOL, s.rtol),
                                  atol=min(REFERENCE_ATOL, s.atol))
        diff, _ = eqx.partition(params, eqx.is_inexact_array)
        unravel = jax.flatten_util.ravel_pytree(diff)[1]
        names, values = flatten_gradient(unravel(jnp.asarray(est.values)))
        _, errors = flatten_gradient(unravel(jnp.asarray(est.errors)))
        return GradientResult(names, float(est.value), values, error=errors,
                              label="finite differences (cross-check; steps searched, "
                                    "Richardson)")

    # -- phase plane --------------------------------------------------------------------------
    def phase(self, s: Settings, traj: Trajectory) -> PhaseResult:
        i, j = s.x_state, s.y_state
        x_range = padded_range(traj.ys[:, i])
        y_range = padded_range(traj.ys[:, j])
        params = self.params(s)
        field = phase.sample_field(self.system.f, s.t0, s.y0, i, j, x_range, y_range, params)
        nullclines = []
        if len(self.system.states) == 2 and i != j:
            nullclines = [phase.zero_contour(field.dx, field.xs, field.ys),
                          phase.zero_contour(field.dy, field.xs, field.ys)]
        forced = phase.depends_on_time(self.system.f, (s.t0, s.t1), s.y0, i, j, x_range,
                                       y_range, params)
        note = ""
        if forced:  # the fixed points of one time's field are not equilibria of the system
            note = (f"the field depends on t: arrows and nullclines at t = {s.t0:g}; "
                    "no equilibria classified")
        equilibria = phase.find_equilibria(self.system.f, s.t0, s.y0, i, j, x_range, y_range,
                                           params) if i != j and not forced else []
        return PhaseResult(x_range, y_range, phase.direction_arrows(field), nullclines,
                           equilibria, note)

    # -- second order -------------------------------------------------------------------------
    def spectrum(self, s: Settings) -> Timed:
        """The Hessian of the loss over the parameters, its eigenvalues and eigenvectors."""
        self.objective.check_span(s.t0, s.t1)
        params = self.params(s)
        names = flat_names(params)
        if len(names) > MAX_HESSIAN_PARAMETERS:
            raise InputError(
                f"The Hessian view forms the dense matrix, which is for models with at most "
                f"{MAX_HESSIAN_PARAMETERS} parameters; this one has {len(names)}. Use "
                "ol.hessian_spectrum(fun, params, k=...) for large models."
            )
        fun = self.closed_loss(s)

        def run():
            return hessian(fun, params, method=s.method, solver=s.solver, rtol=s.rtol,
                           atol=s.atol)

        out = timed(run)
        h = np.asarray(out.value)
        h = 0.5 * (h + h.T)
        eig, vec = np.linalg.eigh(h)
        out.value = Spectrum(names, h, eig, vec)
        return out

    def closed_loss(self, s: Settings) -> Callable:
        """loss(params) with y0 and the time span of `s` closed over.

        For the views that differentiate every float input they are given (Hessian, gradient
        field, gradient check, training). One function per (y0, span, grid), so pressing a
        button again reuses its compiled program.
        """
        key = ("closed", s.y0, s.t0, s.t1, s.n_save)
        if key not in self._losses:
            system, objective, saveat = self.system, self.objective, self._save(s)
            def explorer_loss(p):
                return objective.loss(
                    solve(system, y0=s.y0, params=p, t_span=(s.t0, s.t1), saveat=saveat), p)

            # the sidebar (odelab.lab.feed) holds the explorer's losses weakly
            explorer_loss.__odelab_owned__ = True
            self._losses[key] = explorer_loss
        return self._losses[key]

    # -- loss landscape -----------------------------------------------------------------------
    def field(self, s: Settings, x_name: str, y_name: str, n: int,
              progress: Callable[[float], None] | None = None) -> FieldResult:
        """Loss and gradient over an n × n grid of two parameters (the others fixed).

        Uses `ol.gradient_field` one grid row per compiled call, so `progress(fraction)` can
        report after each row; the axes follow the sliders (range and log scale).
        """
        self.objective.check_span(s.t0, s.t1)
        info = self.system.param_info
        for name in (x_name, y_name):
            if name not in info:
                raise InputError(
                    f"The gradient field needs scalar parameters; {name!r} is not one. "
                    f"Choose from: {', '.join(info)}."
                )
        out = gradient_field(
            self.closed_loss(s), self.params(s),
            x=(x_name, info[x_name].lo, info[x_name].hi),
            y=(y_name, info[y_name].lo, info[y_name].hi), n=n,
            log=(info[x_name].log, info[y_name].log), method=s.method, solver=s.solver,
            rtol=s.rtol, atol=s.atol, chunk_size=n,
            progress=None if progress is None else (lambda done, total: progress(done / total)),
        )
        return FieldResult(x_name, y_name, out.x, out.y, out.loss, out.dloss_dx, out.dloss_dy,
                           out.log_x, out.log_y)


def flatten_gradient(g: Any) -> tuple[list[str], np.ndarray]:
    """Labels and values of a parameter gradient: scalars as they are, arrays as their norm."""
    if isinstance(g, dict):
        names, values = [], []
        for k, v in g.items():
            if v is None:
                continue
            if np.ndim(v) == 0:
                names.append(k)
                values.append(float(v))
            else:
                names.append(f"‖{k}‖")
                values.append(float(jnp.linalg.norm(jnp.ravel(v))))
        return names, np.asarray(values)
    leaves = [x for x in jax.tree_util.tree_leaves(g) if hasattr(x, "shape")]
    return ([f"‖leaf {i}‖" for i in range(len(leaves))],
            np.asarray([float(jnp.linalg.norm(jnp.ravel(x))) for x in leaves]))


def padded_range(values: np.ndarray, pad: float = 0.15) -> tuple[float, float]:
    """The range of the finite `values`, widened by `pad` on each side (never empty)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (-1.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    width = hi - lo
    if width <= 1e-12 * max(abs(lo), abs(hi), 1.0):
        width = max(abs(lo), 1.0)
    return (lo - pad * width, hi + pad * width)


def plain_error(err: Exception) -> str:
    """An error as a sentence for the status area (odelab errors already are)."""
    if isinstance(err, OdelabError):
        return str(err)
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"
