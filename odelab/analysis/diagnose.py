"""What the solves inside a user's function look like: recorded, then measured in plain numbers.

`record_solves()` listens (to `odelab._events.SOLVE`) to every concrete
`ol.solve` while active. `diagnose_solve` then measures one recorded solve: the stiffness of the
vector field along the trajectory, how fast perturbations grow (a finite-time Lyapunov exponent),
step rejections and spikes, and how accurate the saved (mostly interpolated) points are compared
with the last step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _events
from ..solve import solve
from ._html import finite_or_none

N_PROBES = 41  # trajectory points at which the Jacobian is examined
STIFF_INDEX = 1e3  # max|Re λ|·(t1 − t0) above this counts as stiff
GROWTH_WARN = 1e3  # perturbations amplified beyond this make reverse-time integration fragile
SPIKE_RATIO = 50.0  # peak / median of |dy/dt| above this counts as a fast transient
REJECT_WARN = 0.25  # fraction of rejected steps above this suggests something sharp


@dataclasses.dataclass
class RecordedSolve:
    """One concrete `ol.solve` seen while recording: its inputs and its solution."""

    system: Any
    y0: Any
    params: Any
    t_span: tuple[float, float]
    solver: str
    solution: Any


@contextlib.contextmanager
def record_solves() -> Iterator[list[RecordedSolve]]:
    """Collect every concrete (untraced) `ol.solve` made while the block runs."""
    seen: list[RecordedSolve] = []

    def listener(*, system, y0, params, t_span, solver, solution, **_):
        if y0 is None:  # a delay solve starting from its history
            y0 = system.ode_view.y0
        seen.append(RecordedSolve(system, y0, params, (float(t_span[0]), float(t_span[1])),
                                  solver, solution))

    with _events.listening(_events.SOLVE, listener):
        yield seen


@dataclasses.dataclass
class SolveDiagnosis:
    """Measured facts about one solve inside the user's function (None where not measurable)."""

    system: str
    solver: str
    t_span: tuple[float, float]
    steps: int
    rejected: int
    save_points: int
    max_real_eig: float | None = None  # largest |Re λ| over the negative real parts
    min_real_eig: float | None = None  # smallest nonzero |Re λ| over the negative real parts
    max_growth_eig: float | None = None  # largest positive Re λ (local instability)
    stiffness_index: float | None = None
    stiffness_ratio: float | None = None
    ftle: float | None = None  # finite-time Lyapunov exponent, 1/time
    growth: float | None = None  # max over t of ‖∂y(t)/∂y0‖₂
    backward_growth: float | None = None  # max over t of 1/σ_min(∂y(t)/∂y0): growth in reverse
    spike_ratio: float | None = None
    spike_time: float | None = None
    saved_error: float | None = None  # max relative state error at the saved points
    step_error: float | None = None  # relative state error at t1 (a step end)
    interpolated_fraction: float | None = None
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def stiff(self) -> bool:
        return self.stiffness_index is not None and self.stiffness_index > STIFF_INDEX

    @property
    def chaotic(self) -> bool:
        return self.growth is not None and self.growth > GROWTH_WARN

    @property
    def backward_unstable(self) -> bool:
        return self.backward_growth is not None and self.backward_growth > GROWTH_WARN

    @property
    def rejection_rate(self) -> float:
        return self.rejected / max(self.steps, 1)

    def lines(self, measured: Mapping[str, Any] | None = None) -> list[str]:
        """The facts in plain words, with numbers.

        measured: {method name: (verdict, error, {rtol: error})} of the gradients checked on
        this solve, so that what the facts suggest is said beside what was measured, never
        against it.
        """
        measured = dict(measured or {})
        t0, t1 = self.t_span
        out = [
            f"Solve of {self.system!r} with {self.solver!r} over t={t0:g}..{t1:g}: {self.steps} "
            f"steps ({self.rejected} rejected), {self.save_points} save points."
        ]
        if self.max_real_eig is not None:
            ratio = (f", stiffness ratio max/min |Re λ| = {self.stiffness_ratio:.2g}"
                     if self.stiffness_ratio else "")
            word = "stiff" if self.stiff else "not stiff"
            out.append(
                f"Stiffness: {word}. Along the trajectory the Jacobian's eigenvalues reach "
                f"|Re λ| = {self.max_real_eig:.3g} (× time span = {self.stiffness_index:.3g})"
                f"{ratio}."
                + (" Explicit solvers are held to tiny steps by stability, and the tangents of "
                   "forward mode share those steps without error control." if self.stiff else "")
            )
        if self.ftle is not None:
            grow = (
                f" Perturbations grow by up to {self.growth:.2g}×: errors made early in the "
                "solve reach the end amplified as much, and finite differences need small "
                "steps." if self.chaotic else ""
            )
            out.append(
                f"Sensitivity growth: finite-time Lyapunov exponent ≈ {self.ftle:.3g} per unit "
                f"time (‖∂y(t)/∂y0‖ up to {self.growth:.3g}).{grow}"
            )
        if self.backward_unstable:
            out.append(
                f"Backward in time the flow is unstable: re-integrating the state from the end "
                f"amplifies errors by up to {self.backward_growth:.2g}× (1/σ_min of ∂y(t)/∂y0; "
                "what contracts forward explodes backward). " + _backsolve_risk(measured)
            )
        if self.spike_ratio is not None:
            fast = self.spike_ratio > SPIKE_RATIO
            out.append(
                f"Transients: |dy/dt| peaks at {self.spike_ratio:.3g}× its median"
                + (f" (near t={self.spike_time:.4g}): fast transients such as spikes, where "
                   "step-size control and interpolation work hardest." if fast else ".")
                + (f" {100 * self.rejection_rate:.0f}% of steps were rejected: the solver "
                   "trips over something sharp (a spike, or a discontinuity such as an if/where, "
                   "abs or max in the vector field)." if self.rejection_rate > REJECT_WARN else "")
            )
        if self.saved_error is not None:
            out.append(
                f"Interpolated vs stepped points: {100 * self.interpolated_fraction:.0f}% of the "
                f"save points fall between steps and come from the interpolant. Relative state "
                f"error at the save points up to {self.saved_error:.2g}, at the final step "
                f"{self.step_error:.2g}."
                + (" Loss terms at interpolated points are the less accurate ones."
                   if self.saved_error > 10 * max(self.step_error, 1e-300) else "")
            )
        out.extend(self.problems)
        return out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stiff"] = self.stiff
        d["chaotic"] = self.chaotic
        d["backward_unstable"] = self.backward_unstable
        return finite_or_none(d)


EXACT_METHODS = ("checkpoint", "direct", "forward")  # they differentiate the discrete solve


def _backsolve_risk(measured: Mapping[str, Any]) -> str:
    """What a backward-unstable flow means for backsolve, beside the errors measured: only
    backsolve's excess over a method that never integrates backward is the instability's."""
    advice = "use checkpoint or forward, or save (and put loss terms) at more times"
    if "backsolve" not in measured:
        return ("backsolve re-integrates the state this way between save points, so its "
                f"gradient is at risk here (not checked); {advice}.")
    verdict, error, study = _measured(measured["backsolve"])
    if error is None:
        return (f"backsolve re-integrates the state this way between save points: its row "
                f"reads {verdict} (no finite gradient); {advice}.")
    # backsolve's error against the best exact method's, tolerance by tolerance
    worst = None
    for name in EXACT_METHODS:
        if name not in measured:
            continue
        _, _, theirs = _measured(measured[name])
        for rtol, mine in study.items():
            other = theirs.get(rtol)
            if other is None:
                continue
            ratio = (mine if mine is not None else math.inf) / max(other, 1e-300)
            if worst is None or ratio > worst[0]:
                worst = (ratio, rtol, mine, name, other)
    if worst is not None:
        ratio, rtol, mine, name, other = worst
        if ratio <= 3:
            return (f"backsolve re-integrates the state this way between save points, yet its "
                    f"measured errors are no worse than {name}'s, which never integrates "
                    "backward (at every tolerance of the study): at these save points the "
                    "instability does not show. Fewer save points or a longer span may change "
                    "that; check again after such changes.")
        shown = "no finite gradient" if mine is None else f"error {mine:.2g}"
        return (f"backsolve re-integrates the state this way between save points, and it "
                f"shows: at rtol {rtol:g} backsolve gives {shown} where {name} gives "
                f"{other:.2g}; {advice}.")
    if verdict == "accurate":
        return (f"backsolve re-integrates the state this way between save points, yet its "
                f"measured error here is {error:.2g} (accurate): the stretches between save "
                "points are short enough for this loss. Fewer save points, or a longer span, "
                "may break it; check again after such changes.")
    return (f"backsolve re-integrates the state this way between save points, which may be why "
            f"its row reads {verdict} (error {error:.2g}); compare checkpoint's row "
            f"(methods=['backsolve', 'checkpoint']), or {advice}.")


def _measured(entry: Any) -> tuple[str, float | None, dict[float, float | None]]:
    """(verdict, error, {rtol: error}) from a `measured` entry ((verdict, error) also goes)."""
    verdict, error = entry[0], entry[1]
    study = dict(entry[2]) if len(entry) > 2 else {}
    return verdict, error, study


def diagnose_solve(rec: RecordedSolve, *, tight_rtol: float = 1e-12) -> SolveDiagnosis:
    """Measure one recorded solve (each measurement is skipped, with a note, if it fails)."""
    sol = rec.solution
    diag = SolveDiagnosis(
        system=getattr(rec.system, "name", "system"), solver=rec.solver, t_span=rec.t_span,
        steps=int(sol.num_steps), rejected=int(sol.num_rejected), save_points=int(sol.ts.shape[0]),
    )
    for measure in (_eigenvalues, _growth, _accuracy_of_saved_points):
        try:
            measure(rec, diag, tight_rtol)
        except Exception as err:  # a diagnosis must never break the check itself
            diag.problems.append(f"({measure.__name__.strip('_')} not measured: "
                                 f"{type(err).__name__}: {str(err).splitlines()[0][:120]})")
    return diag


def _probe_indices(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, N_PROBES)).round().astype(int))


def _eigenvalues(rec: RecordedSolve, diag: SolveDiagnosis, _: float) -> None:
    sol, p = rec.solution, rec.params
    f = getattr(rec.system, "ode_view", rec.system).f  # a delay equation: history fed in
    idx = _probe_indices(sol.ts.shape[0])
    ts, ys = jnp.asarray(sol.ts)[idx], jnp.asarray(sol.ys)[idx]
    jac, rates = _jacobians_and_rates(f, ts, ys, p)
    eig = np.linalg.eigvals(np.asarray(jac))
    re = eig.real
    negative = -re[re < 0]
    span = rec.t_span[1] - rec.t_span[0]
    diag.max_real_eig = float(np.max(np.abs(re))) if re.size else 0.0
    diag.stiffness_index = diag.max_real_eig * span
    if negative.size:
        small = negative[negative > 1e-12 * negative.max()]
        diag.stiffness_ratio = float(negative.max() / small.min()) if small.size else None
    diag.max_growth_eig = float(max(re.max(), 0.0)) if re.size else 0.0
    # rates normalised per state by its range over the trajectory, so units do not matter
    y_all = np.asarray(sol.ys)
    scale = np.maximum(np.ptp(y_all, axis=0), 1e-12 * (np.abs(y_all).max() + 1e-300)) / span
    speed = np.max(np.abs(np.asarray(rates)) / scale, axis=1)
    median = float(np.median(speed))
    if median > 0:
        diag.spike_ratio = float(speed.max() / median)
        diag.spike_time = float(np.asarray(ts)[int(np.argmax(speed))])


@eqx.filter_jit
def _jacobians_and_rates(f, ts, ys, p):
    """∂f/∂y and f at each (t, y): one program per vector field, kept for the next check."""
    jac = jax.vmap(lambda t, y: jax.jacfwd(lambda yy: f(t, yy, p))(y))(ts, ys)
    return jac, jax.vmap(lambda t, y: f(t, y, p))(ts, ys)


def _growth(rec: RecordedSolve, diag: SolveDiagnosis, _: float) -> None:
    t0, t1 = rec.t_span

    def trajectory(y0):
        return solve(rec.system, y0=y0, params=rec.params, t_span=rec.t_span, saveat=21,
                     solver=rec.solver, rtol=1e-8, atol=1e-10, method="forward").ys

    phi = np.asarray(jax.jacfwd(trajectory)(jnp.asarray(rec.y0, dtype=float)))
    finite = [np.all(np.isfinite(m)) for m in phi]
    norms = np.array([np.linalg.norm(m, 2) if ok else np.inf for m, ok in zip(phi, finite)])
    smallest = np.array([np.linalg.svd(m, compute_uv=False)[-1] if ok else 0.0
                         for m, ok in zip(phi, finite)])
    diag.growth = float(np.max(norms))
    diag.backward_growth = float(np.max(1.0 / np.maximum(smallest, 1e-300)))
    diag.ftle = float(np.log(max(norms[-1], 1e-300)) / (t1 - t0))


def _accuracy_of_saved_points(rec: RecordedSolve, diag: SolveDiagnosis, tight: float) -> None:
    sol = rec.solution
    ts = np.asarray(sol.ts)
    # evenly spaced save points are asked for as a count, which reuses the program fun compiled
    even = np.allclose(ts, np.linspace(ts[0], ts[-1], ts.shape[0]), rtol=0, atol=1e-12 * (
        abs(ts[-1]) + 1))
    saveat = int(ts.shape[0]) if even else ts
    kwargs = dict(y0=rec.y0, params=rec.params, t_span=rec.t_span, saveat=saveat,
                  solver=rec.solver, rtol=tight, atol=tight * 1e-2, throw=False)
    exact = solve(rec.system, **kwargs)
    if not exact.ok:  # tight tolerances take many more steps
        exact = solve(rec.system, **dict(kwargs, max_steps=1_000_000, throw=True))
    ys, ref = np.asarray(sol.ys), np.asarray(exact.ys)
    scale = np.maximum(np.abs(ref).max(axis=0), 1e-12)
    err = np.max(np.abs(ys - ref) / scale, axis=1)
    diag.saved_error = float(np.max(err))
    diag.step_error = float(np.max(np.abs(np.asarray(sol.y_reached) - ref[-1]) / scale))
    # t0 and t1 are step ends; interior points are interpolated unless a step lands on them
    diag.interpolated_fraction = float(max(ts.shape[0] - 2, 0) / ts.shape[0])
