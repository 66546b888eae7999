"""`check_gradient`: is the gradient through my solver right, and if not, why?

The check computes the gradient of the user's `fun` with each method at several tolerances (the
same `method=`/`rtol=` mechanism as `ol.gradient`), compares every one with a trustworthy
reference that is itself cross-checked with Richardson-extrapolated finite differences, studies
how the error shrinks as the tolerance tightens, measures the solves inside `fun` (stiffness,
sensitivity growth, spikes, interpolation) and recommends a configuration.

    >>> report = ol.check_gradient(loss, params)
    >>> report.ok, report.overall, report.recommendation
    >>> print(report)            # or display it in a notebook
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from . import _context
from ._derivatives import _split, flat_names, gradient, jvp
from ._diagnose import SolveDiagnosis, _finite_or_none, diagnose_solve, record_solves
from ._errors import InputError, MethodNotApplicableError
from ._inspect import AdjointInspection as AdjointInspection
from ._inspect import inspect_adjoint as inspect_adjoint
from ._report_html import badge, number, table, text_table
from ._solve import DEFAULT_RTOL
from .methods import METHODS, GradientMethod, method_object

DEFAULT_RTOLS = (1e-4, 1e-6, 1e-8, 1e-10)
REFERENCE_RTOL = 1e-12
ATOL_PER_RTOL = 1e-2  # atol = rtol × this, as odelab's defaults (1e-6, 1e-8)
FORWARD_REFERENCE_MAX_PARAMS = 16  # beyond this the reference runs in reverse mode
FULL_FD_MAX_PARAMS = 32  # beyond this finite differences check one random direction only
AWAY = 0.01  # the "1% away" point whose gradient sets the error scale
VERDICT_ORDER = ("accurate", "inaccurate", "unstable", "failed")


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class StudyPoint:
    """One gradient of the convergence study: a method at one tolerance."""

    rtol: float
    error: float | None  # ‖g − g_ref‖ / scale; None when the gradient failed
    seconds: float
    message: str = ""


@dataclasses.dataclass
class MethodCheck:
    """The check of one (method, solver): values at the primary tolerance and the study."""

    label: str
    method: str
    solver: str | None
    rtol: float
    values: np.ndarray | None
    error: float | None
    verdict: str
    study: list[StudyPoint]
    order: float | None  # slope of log(error) against log(rtol) (1 ≈ error follows rtol)
    notes: list[str]

    @property
    def abs_errors(self) -> np.ndarray | None:
        return None if self._ref is None or self.values is None else np.abs(self.values - self._ref)

    _ref: np.ndarray | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass
class Recommendation:
    """The configuration to use, and why (measured)."""

    method: str
    solver: str | None
    rtol: float
    why: str
    verified: bool  # True when this exact configuration met the accuracy in the study

    def __str__(self) -> str:
        solver = f", solver={self.solver!r}" if self.solver else ""
        return f"method={self.method!r}{solver}, rtol={self.rtol:g}: {self.why}"


@dataclasses.dataclass
class GradientReport:
    """The result of `ol.check_gradient`: verdicts, errors, diagnosis and a recommendation.

    rows: one MethodCheck per (method, solver); `overall` is the worst verdict among them and
    `ok` is True when every method checked is accurate. `names` are the flattened parameter
    names (or ["direction"] for a directional check). Display it in a notebook, print it, or
    `to_json()` it.
    """

    fun_name: str
    names: list[str]
    direction: np.ndarray | None
    reference_label: str
    reference: np.ndarray
    fd_values: np.ndarray | None
    fd_agreement: float | None
    scale: float
    scale_note: str
    accuracy: float
    rtols: tuple[float, ...]
    rows: list[MethodCheck]
    diagnosis: list[str]
    solves: list[SolveDiagnosis]
    recommendation: Recommendation | None

    @property
    def overall(self) -> str:
        """The worst verdict among the rows: "accurate", "inaccurate", "unstable" or "failed"."""
        verdicts = [r.verdict for r in self.rows] or ["failed"]
        return max(verdicts, key=VERDICT_ORDER.index)

    @property
    def ok(self) -> bool:
        """True when every method checked gave an accurate gradient."""
        return self.overall == "accurate"

    def row(self, label: str) -> MethodCheck:
        """The MethodCheck whose label (or method name) is `label`."""
        for r in self.rows:
            if label in (r.label, r.method):
                return r
        raise KeyError(f"no method {label!r} in this report; have {[r.label for r in self.rows]}")

    # -- plain text ---------------------------------------------------------------------------
    def _header(self) -> list[str]:
        what = "one direction" if self.direction is not None else f"{len(self.names)} parameters"
        agree = (f"; Richardson finite differences agree with it to {self.fd_agreement:.2g}"
                 if self.fd_agreement is not None else "")
        return [
            f"Gradient check of {self.fun_name} ({what}): {self.overall.upper()}",
            f"Reference: {self.reference_label}{agree}.",
            f"Errors are ‖g − g_ref‖ relative to {self.scale:.3g} ({self.scale_note}); "
            f"accurate means ≤ {self.accuracy:g}.",
        ]

    def _study_cells(self, r: MethodCheck) -> list[str]:
        by = {p.rtol: p for p in r.study}
        return [number(by[t].error, 1) if t in by and by[t].error is not None else
                ("fail" if t in by else "") for t in self.rtols]

    def _time(self, r: MethodCheck) -> str:
        times = [p.seconds for p in r.study if p.rtol == r.rtol] or [p.seconds for p in r.study]
        return f"{times[0]:.2g} s" if times else ""

    def __str__(self) -> str:
        headers = ["method", "solver", "rtol", "error", "verdict"] + [
            f"@{t:g}" for t in self.rtols] + ["time"]
        rows = [[r.label, r.solver or "(fun's)", f"{r.rtol:g}", number(r.error, 1), r.verdict,
                 *self._study_cells(r), self._time(r)] for r in self.rows]
        out = self._header() + ["", text_table(headers, rows), "", "Diagnosis:"]
        out += [f"  - {line}" for line in self.diagnosis]
        if self.recommendation is not None:
            out += ["", f"Recommendation: {self.recommendation}"]
        out += ["", "Per parameter (reference, then each method's absolute error at its rtol):"]
        p_headers = ["parameter", "reference"] + [r.label for r in self.rows]
        p_rows = []
        for i, name in enumerate(self.names[:50]):
            cells = [name, number(float(self.reference[i]), 3)]
            for r in self.rows:
                ae = r.abs_errors
                cells.append(number(float(ae[i]), 1) if ae is not None else "—")
            p_rows.append(cells)
        out.append(text_table(p_headers, p_rows))
        if len(self.names) > 50:
            out.append(f"... {len(self.names) - 50} more parameters (see to_dict()).")
        return "\n".join(out)

    def __repr__(self) -> str:
        return (f"<GradientReport {self.fun_name}: {self.overall}; "
                + ", ".join(f"{r.label}={r.verdict}" for r in self.rows) + ">")

    # -- HTML ---------------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        import html

        header = self._header()
        title = (f"<div style='font-size:1.1em;margin-bottom:4px'><b>Gradient check of "
                 f"{html.escape(self.fun_name)}</b> {badge(self.overall)}</div>")
        meta = "".join(f"<div>{html.escape(x)}</div>" for x in header[1:])
        headers = ["method", "solver", "rtol", "error", "verdict"] + [
            f"error @ rtol {t:g}" for t in self.rtols] + ["time"]
        rows = [[html.escape(r.label), html.escape(r.solver or "(fun's)"), f"{r.rtol:g}",
                 number(r.error, 1), badge(r.verdict), *self._study_cells(r), self._time(r)]
                for r in self.rows]
        diag = "".join(f"<li>{html.escape(line)}</li>" for line in self.diagnosis)
        rec = ("" if self.recommendation is None else
               f"<p><b>Recommendation:</b> {html.escape(str(self.recommendation))}</p>")
        p_rows = [[html.escape(n), number(float(self.reference[i]), 3)] + [
            number(float(r.abs_errors[i]), 1) if r.abs_errors is not None else "—"
            for r in self.rows] for i, n in enumerate(self.names[:50])]
        params = table(["parameter", "reference"] + [r.label for r in self.rows], p_rows, raw=True)
        return (
            f"<div>{title}{meta}<div style='margin:6px 0'>{table(headers, rows, raw=True)}</div>"
            f"<b>Diagnosis</b><ul>{diag}</ul>{rec}<details><summary>Per parameter (absolute "
            f"errors at each method's rtol)</summary>{params}</details></div>"
        )

    # -- data ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything in plain Python types (NaN and inf as None)."""
        arr = lambda a: None if a is None else [float(x) for x in np.asarray(a)]
        return _finite_or_none({
            "fun": self.fun_name,
            "overall": self.overall,
            "ok": self.ok,
            "names": list(self.names),
            "direction": arr(self.direction),
            "reference": {"label": self.reference_label, "values": arr(self.reference),
                          "finite_difference": arr(self.fd_values),
                          "fd_agreement": self.fd_agreement},
            "scale": self.scale,
            "scale_note": self.scale_note,
            "accuracy": self.accuracy,
            "rtols": list(self.rtols),
            "methods": [
                {"label": r.label, "method": r.method, "solver": r.solver, "rtol": r.rtol,
                 "values": arr(r.values), "abs_errors": arr(r.abs_errors), "error": r.error,
                 "verdict": r.verdict, "order": r.order, "notes": list(r.notes),
                 "study": [dataclasses.asdict(p) for p in r.study]}
                for r in self.rows
            ],
            "diagnosis": list(self.diagnosis),
            "solves": [d.to_dict() for d in self.solves],
            "recommendation": None if self.recommendation is None else
            dataclasses.asdict(self.recommendation),
        })

    def to_json(self, **kwargs: Any) -> str:
        """`to_dict()` as JSON text (kwargs go to json.dumps, e.g. indent=2)."""
        return json.dumps(self.to_dict(), **kwargs)


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
def _label(m: GradientMethod) -> str:
    step = getattr(m, "step", None)
    if m.name == "finite-difference" and (step is not None or not m.richardson):
        parts = ([f"step={step:g}"] if step is not None else []) + (
            [] if m.richardson else ["richardson=False"])
        return f"finite-difference({', '.join(parts)})"
    return m.name


def _methods(methods: Any) -> list[GradientMethod]:
    if methods is None:
        return [cls() for cls in METHODS.values() if cls.capabilities.supports("gradient")]
    if isinstance(methods, (str, GradientMethod)):
        methods = [methods]
    out = []
    for m in methods:
        obj = method_object(m)
        if obj == "auto":
            raise InputError(
                "`methods` lists 'auto'; name the methods to compare (auto picks one of them), "
                "e.g. methods=['checkpoint', 'forward']."
            )
        out.append(obj)
    if not out:
        raise InputError("`methods` is empty; give at least one method, or None for all.")
    return out


def _rtols(rtols: Any, rtol: float) -> tuple[float, ...]:
    values = DEFAULT_RTOLS if rtols is None else rtols
    try:
        values = sorted({float(r) for r in values} | {float(rtol)}, reverse=True)
    except TypeError as err:
        raise InputError(
            f"`rtols` must be a list of tolerances such as [1e-4, 1e-6, 1e-8]; got {rtols!r}."
        ) from err
    for r in values:
        if not (0 < r < 1):
            raise InputError(f"`rtols` holds {r!r}; tolerances are small positive numbers.")
    return tuple(values)


def _solvers(solver: Any) -> list[str | None]:
    if solver is None or isinstance(solver, str):
        return [solver]
    solvers = list(solver)
    if not solvers or not all(isinstance(s, str) for s in solvers):
        raise InputError(f"`solver` must be a name or a list of names; got {solver!r}.")
    return solvers


def _flat(tree: Any) -> np.ndarray:
    diff = eqx.filter(tree, eqx.is_inexact_array)
    return np.asarray(ravel_pytree(diff)[0], dtype=float)


def _direction(direction: Any, diff: Any) -> Any:
    flat, unravel = ravel_pytree(diff)
    if isinstance(direction, str):
        if direction != "random":
            raise InputError(
                f"`direction={direction!r}` is not known: give 'random' or a pytree shaped like "
                "params."
            )
        # each component scaled like its parameter, so one step along it moves every parameter
        # by a similar fraction (conductances of 100 and 0.01 side by side)
        size = np.abs(np.asarray(flat))
        size = np.maximum(size, 1e-3 * (size.mean() + 1e-12))
        v = np.random.default_rng(0).standard_normal(flat.shape[0]) * size
        return unravel(jax.numpy.asarray(v / np.linalg.norm(v)))
    return direction


def _atol(rtol: float, atol: Any) -> float:
    return rtol * ATOL_PER_RTOL if atol is None else float(atol)


# --------------------------------------------------------------------------------------------
# the check
# --------------------------------------------------------------------------------------------
def check_gradient(
    fun: Callable,
    params: Any,
    methods: Any = None,
    rtols: Sequence[float] | None = None,
    reference: Any = "auto",
    direction: Any = None,
    solver: Any = None,
    *,
    rtol: float = DEFAULT_RTOL,
    atol: float | None = None,
    accuracy: float = 1e-4,
    scale: Any = "auto",
    diagnose: bool = True,
) -> GradientReport:
    """Check the gradient of `fun` (which calls `ol.solve`) at `params`; see GradientReport.

    methods: names or method objects to check (default: every method that gives gradients),
      e.g. ["checkpoint", "forward", ol.methods.FiniteDifference(step=1e-3)] (the method
      classes hang off `ol.methods`).
    rtols: the tolerances of the convergence study (default 1e-4, 1e-6, 1e-8, 1e-10); `rtol`
      (default odelab's 1e-6) is the one whose result sets each method's verdict.
    reference: "auto" (the `forward-sensitivity` method if registered, else `forward` — or
      `checkpoint` beyond 16 parameters — at rtol 1e-12), a method, or known exact gradient
      values shaped like params. Always cross-checked with Richardson finite differences.
    direction: None for the full gradient, or a pytree shaped like params (or "random": a seeded
      random unit direction whose components scale with the parameters) to check only the
      directional derivative ∇fun·direction: one jvp per method, cheap for big models.
    solver: a solver name or a list of them to compare; None keeps whatever `fun`'s solves use.
    atol: fixed absolute tolerance; by default atol = rtol × 1e-2 at every rtol.
    accuracy: the largest relative error called accurate.
    scale: what errors are relative to. "auto": the larger of |∇fun| at params and 1% away
      (so a gradient that should be zero, at a minimum, is judged against its neighbourhood);
      or a number.
    diagnose: measure the solves inside `fun` (stiffness, growth, spikes); off saves time.

    Only solves that do not name their own method/rtol/solver are varied: a `fun` that fixes
    `rtol=` inside shows a flat convergence study, and the diagnosis says so.
    """
    if not callable(fun):
        raise InputError(f"`fun` must be a function of the parameters; got {type(fun).__name__}.")
    diff, _ = _split(params)
    n = int(sum(np.size(x) for x in jax.tree_util.tree_leaves(diff)))
    method_list = _methods(methods)
    study_rtols = _rtols(rtols, rtol)
    solvers = _solvers(solver)
    if direction is not None:
        direction = _direction(direction, diff)
    names = ["direction"] if direction is not None else flat_names(params)
    evaluate = _evaluator(fun, params, direction)

    ref_values, ref_label, ref_method = _reference(evaluate, fun, params, reference, n, atol,
                                                   solvers[0])
    scale_value, scale_note = _scale(evaluate, params, ref_values, ref_method, atol, solvers[0],
                                     scale)
    if not np.isfinite(scale_value) or scale_value == 0:
        scale_value, scale_note = 1.0, "absolute errors: the reference gradient is zero here"
    fd_values, fd_agree = _cross_check(evaluate, fun, params, direction, ref_values, n, atol,
                                       solvers[0], scale_value)

    rows = []
    for s in solvers:
        for m in method_list:
            try:
                rows.append(_check_method(evaluate, m, s, rtol, study_rtols, atol, ref_values,
                                          scale_value, accuracy, skip_inapplicable=methods is None))
            except MethodNotApplicableError:
                # a method for another kind of system (delay-adjoint on an ODE, backsolve on a
                # delay equation): left out of the default list (a failed row when asked for)
                continue

    solves: list[SolveDiagnosis] = []
    if diagnose:
        solves = _diagnose_solves(fun, params, solvers, rtol, atol)
    diagnosis = _diagnosis(rows, solves, fd_agree, rtol, accuracy, study_rtols, diagnose)
    recommendation = _recommend(rows, solves, accuracy, ref_label)
    return GradientReport(
        fun_name=getattr(fun, "__name__", type(fun).__name__), names=names,
        direction=None if direction is None else _flat(direction), reference_label=ref_label,
        reference=ref_values, fd_values=fd_values, fd_agreement=fd_agree, scale=scale_value,
        scale_note=scale_note, accuracy=accuracy, rtols=study_rtols, rows=rows,
        diagnosis=diagnosis, solves=solves, recommendation=recommendation,
    )


def _evaluator(fun: Callable, params: Any, direction: Any) -> Callable[..., np.ndarray]:
    """(method, rtol, atol, solver, at=params) -> flat gradient or directional derivative."""

    def evaluate(method, rtol, atol, solver, at=None):
        at = params if at is None else at
        if direction is None:
            return _flat(gradient(fun, at, method=method, rtol=rtol, atol=atol, solver=solver))
        _, d = jvp(fun, at, direction, method=method, rtol=rtol, atol=atol, solver=solver)
        return np.atleast_1d(np.asarray(d, dtype=float))

    return evaluate


def _reference(evaluate, fun, params, reference, n, atol, solver):
    if not isinstance(reference, (str, GradientMethod)) or (
        isinstance(reference, str) and reference not in ("auto", *METHODS)
    ):
        if isinstance(reference, str):
            method_object(reference)  # raises the helpful unknown-name error
        values = _flat(reference) if not np.isscalar(reference) else np.atleast_1d(reference)
        return values.astype(float), "the exact values given", None
    if reference == "auto":
        if "forward-sensitivity" in METHODS:
            name = "forward-sensitivity"
        else:
            name = "forward" if n <= FORWARD_REFERENCE_MAX_PARAMS else "checkpoint"
        method = METHODS[name]()
    else:
        method = method_object(reference)
    ref_atol = _atol(REFERENCE_RTOL, atol)
    values = evaluate(method, REFERENCE_RTOL, ref_atol, solver)
    solver_note = f", solver {solver!r}" if solver else ""
    return values, f"{_label(method)} at rtol={REFERENCE_RTOL:g}{solver_note}", method


def _cross_check(evaluate, fun, params, direction, ref, n, atol, solver, scale):
    """Richardson finite differences at the reference tolerance; their distance / scale."""
    fd = METHODS["finite-difference"]()
    ref_atol = _atol(REFERENCE_RTOL, atol)
    try:
        if direction is None and n > FULL_FD_MAX_PARAMS:
            diff, _ = _split(params)
            v = _direction("random", diff)
            _, d = jvp(fun, params, v, method=fd, rtol=REFERENCE_RTOL, atol=ref_atol,
                       solver=solver)
            expected = float(ref @ _flat(v))
            return None, float(abs(float(d) - expected) / scale)
        values = evaluate(fd, REFERENCE_RTOL, ref_atol, solver)
    except Exception:  # the cross-check is advisory; its absence is reported as None
        return None, None
    return values, float(np.linalg.norm(values - ref) / scale)


def _scale(evaluate, params, ref, ref_method, atol, solver, scale):
    here = float(np.linalg.norm(ref))
    if scale != "auto":
        return float(scale), "the scale given"
    if ref_method is None:
        return here, "|∇fun| of the exact values given"
    diff, static = _split(params)
    flat, unravel = ravel_pytree(diff)
    size = np.maximum(np.abs(np.asarray(flat)), 1e-2 * (np.abs(np.asarray(flat)).mean() + 1e-12))
    signs = np.where(np.arange(flat.shape[0]) % 2 == 0, 1.0, -1.0)
    away = eqx.combine(unravel(flat + AWAY * signs * size), static)
    try:
        there = float(np.linalg.norm(evaluate(ref_method, REFERENCE_RTOL,
                                              _atol(REFERENCE_RTOL, atol), solver, at=away)))
    except Exception:
        there = float("nan")
    if not np.isfinite(there) or there <= here:
        return here, f"|∇fun| here; 1% away it is {there:.3g}"
    return there, f"the larger of |∇fun| here, {here:.3g}, and 1% away, {there:.3g}"


def _error(values: np.ndarray, ref: np.ndarray, scale: float) -> float | None:
    if values is None or not np.all(np.isfinite(values)):
        return None
    return float(np.linalg.norm(values - ref) / scale)


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text[:300]}"


def _check_method(evaluate, method, solver, rtol, rtols, atol, ref, scale, accuracy, *,
                  skip_inapplicable=False):
    label = _label(method)
    study: list[StudyPoint] = []
    primary_values = None
    # the first call compiles: run the primary tolerance once untimed, then time the study
    try:
        primary_values = evaluate(method, rtol, _atol(rtol, atol), solver)
    except MethodNotApplicableError as err:
        if skip_inapplicable:
            raise
        failure = _short(err)
    except Exception as err:
        failure = _short(err)
    else:
        failure = ""
    for r in rtols:
        if failure and r == rtol:
            study.append(StudyPoint(r, None, 0.0, failure))
            continue
        start = time.perf_counter()
        try:
            values = evaluate(method, r, _atol(r, atol), solver)
            err, msg = _error(values, ref, scale), ""
            if err is None:
                msg = "non-finite gradient (NaN/inf)"
        except Exception as e:
            err, msg = None, _short(e)
        study.append(StudyPoint(r, err, time.perf_counter() - start, msg))
    primary = next(p for p in study if p.rtol == rtol)
    error = primary.error
    order = _order(study)
    verdict, notes = _verdict(primary, study, order, accuracy, failure)
    row = MethodCheck(label=label, method=method.name, solver=solver, rtol=rtol,
                      values=primary_values, error=error, verdict=verdict, study=study,
                      order=order, notes=notes)
    row._ref = ref
    return row


def _order(study: list[StudyPoint]) -> float | None:
    """Least-squares slope of log(error) against log(rtol) over the finite, nonzero errors."""
    pts = [(math.log10(p.rtol), math.log10(p.error)) for p in study
           if p.error is not None and p.error > 0]
    if len(pts) < 2:
        return None
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def _verdict(primary, study, order, accuracy, failure):
    notes = []
    finite = [p for p in study if p.error is not None]
    if primary.error is None:
        return "failed", [failure or primary.message]
    errors = [p.error for p in finite]
    tightest = min(finite, key=lambda p: p.rtol)
    loosest = max(finite, key=lambda p: p.rtol)
    stalls = (tightest.error > accuracy and len(finite) >= 2
              and tightest.error > 0.1 * loosest.error)
    grows = len(finite) >= 2 and tightest.error > 10 * min(errors)
    if stalls or grows:
        what = "grows" if grows else "does not shrink"
        notes.append(
            f"its error {what} as the tolerance tightens ({loosest.error:.2g} at rtol "
            f"{loosest.rtol:g}, {tightest.error:.2g} at {tightest.rtol:g}): the error does not "
            "come from the solver's tolerance"
        )
    failed_some = [p for p in study if p.error is None]
    if failed_some:
        notes.append("failed at rtol " + ", ".join(f"{p.rtol:g}" for p in failed_some) + ": "
                     + failed_some[0].message)
    if primary.error <= accuracy:
        return "accurate", notes
    if (stalls or grows or failed_some) and primary.error > 1.0:
        return "unstable", notes
    return "inaccurate", notes


# --------------------------------------------------------------------------------------------
# diagnosis and recommendation
# --------------------------------------------------------------------------------------------
def _diagnose_solves(fun, params, solvers, rtol, atol) -> list[SolveDiagnosis]:
    out = []
    for s in solvers:
        with record_solves() as seen, _context.solve_defaults(
            solver=s, rtol=rtol, atol=_atol(rtol, atol)
        ):
            try:
                fun(params)
            except Exception:
                pass  # the method rows already report failures
        # the first few distinct solves are enough to characterise the problem
        for rec in seen[:3]:
            out.append(diagnose_solve(rec, tight_rtol=REFERENCE_RTOL))
    return out


def _diagnosis(rows, solves, fd_agree, rtol, accuracy, rtols, diagnose) -> list[str]:
    lines = []
    if fd_agree is not None:
        trust = ("trustworthy" if fd_agree < 1e-4
                 else "itself uncertain: read small errors with care")
        lines.append(f"The reference and Richardson finite differences agree to {fd_agree:.2g} "
                     f"(relative to the error scale): the reference is {trust}.")
    for r in rows:
        where = f" with {r.solver!r}" if r.solver else ""
        head = f"{r.label}{where}: {r.verdict}"
        if r.error is not None:
            head += f", error {r.error:.2g} at rtol {r.rtol:g}"
            if r.order is not None:
                head += f" (error ∝ rtol^{r.order:.2f} over the study)"
        lines.append(head + ("; " + "; ".join(r.notes) if r.notes else "") + ".")
    flat = [r for r in rows if len({p.error for p in r.study if p.error is not None}) == 1
            and len([p for p in r.study if p.error is not None]) > 1 and r.error is not None
            and r.error > 0]
    if flat and len(flat) == len([r for r in rows if r.error is not None]):
        lines.append("Changing rtol changed no gradient at all: `fun` probably passes its own "
                     "rtol= (or method=) to ol.solve. Remove them there so the check (and "
                     "ol.gradient's rtol=) can set them.")
    for d in solves:
        lines.extend(d.lines())
        # does step-size control cover the sensitivities? compare state and gradient accuracy
        if d.step_error is not None:
            state = max(d.saved_error, d.step_error)
            for r in rows:
                if r.error is not None and r.solver in (None, d.solver) and state > 0 and (
                        r.error > 100 * state and r.error > accuracy
                        and r.method != "finite-difference"):
                    lines.append(
                        f"Step-size control does not cover the sensitivities of {r.label}: the "
                        f"state is accurate to {state:.2g} at rtol {rtol:g} but the gradient only "
                        f"to {r.error:.2g} ({r.error / state:.2g}× worse). The controller watches "
                        "the state alone; tighten rtol for gradients, or use a method whose "
                        "error follows the state's (checkpoint/direct differentiate exactly what "
                        "the solver computed).")
    if diagnose and not solves:
        lines.append("No concrete ol.solve was seen when calling fun(params) (is fun wrapped in "
                     "jax.jit, or does it solve without ol.solve?), so the solves could not be "
                     "diagnosed.")
    return lines


def _recommend(rows, solves, accuracy, ref_label) -> Recommendation | None:
    candidates = []
    for r in rows:
        for p in r.study:
            if p.error is not None and p.error <= accuracy:
                candidates.append((-p.rtol, p.seconds, r, p))
    stiff_explicit = [d for d in solves if d.stiff and d.solver in (
        "tsit5", "dopri5", "dopri8", "bosh3", "heun", "midpoint", "ralston")]
    stiff_note = ""
    if stiff_explicit:
        d = stiff_explicit[0]
        stiff_note = (f" The problem is stiff (|Re λ|·T = {d.stiffness_index:.2g}); if "
                      f"{d.solver!r} takes too many steps, compare a stiff solver with "
                      f"solver=[{d.solver!r}, 'kvaerno5'].")
    if not candidates:
        return Recommendation(
            method=ref_label.split(" ")[0], solver=rows[0].solver if rows else None,
            rtol=REFERENCE_RTOL,
            why=(f"no configuration tested reached accuracy {accuracy:g}; only the reference "
                 f"({ref_label}) is trusted. Use it, or extend the study with tighter rtols."
                 + stiff_note),
            verified=False,
        )
    candidates.sort(key=lambda c: (c[0], c[1]))
    _, seconds, row, point = candidates[0]
    others = [c for c in candidates if c[3].rtol == point.rtol and c[2] is not row]
    compare = "; ".join(f"{c[2].label}: {c[1]:.2g} s" for c in others[:3])
    why = (
        f"the loosest tolerance at which a method's gradient error ({point.error:.2g}) is within "
        f"accuracy {accuracy:g}, and the fastest method there ({seconds:.2g} s per gradient"
        + (f"; {compare}" if compare else "") + ")."
    )
    failing = [r.label for r in rows if r.verdict != "accurate"]
    if failing:
        why += f" At rtol {rows[0].rtol:g}, not accurate: {', '.join(failing)}."
    return Recommendation(method=row.label, solver=row.solver, rtol=point.rtol,
                          why=why + stiff_note, verified=True)


# --------------------------------------------------------------------------------------------
# command line: odelab check MODULE:FUNCTION [--params MODULE:NAME] [--json]
# --------------------------------------------------------------------------------------------
CLI_HELP = """Check the gradient of a loss function through its ODE solves.

MODULE:FUNCTION names either
  * with --params: the loss itself, fun(params) -> scalar, and --params MODULE:NAME names the
    parameters (a value, or a function without arguments returning them); or
  * without --params: a function without arguments returning a GradientReport (printed as it
    is) or a (fun, params) pair, which is then checked.
Exit status: 0 when every method checked is accurate, 1 when not, 2 on usage errors.
"""


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors return 2 instead of exiting the process
        raise _UsageError(f"{self.format_usage()}odelab check: error: {message}")


def _load(spec: str, what: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise _UsageError(f"{what} must look like MODULE:NAME (e.g. mymodels:loss); got {spec!r}.")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise _UsageError(f"cannot import module {module_name!r}: {_short(err)}") from err
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise _UsageError(f"module {module_name!r} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    return obj


def cli_check(argv: Sequence[str] | None = None) -> int:
    """`odelab check MODULE:FUNCTION [--params MODULE:NAME] [--json] ...`; returns the exit code.

    `argv` are the arguments after `check`. See CLI_HELP for what FUNCTION may return.
    """
    parser = _Parser(prog="odelab check", description=CLI_HELP,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", metavar="MODULE:FUNCTION")
    parser.add_argument("--params", metavar="MODULE:NAME")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--methods", help="comma-separated method names, e.g. checkpoint,forward")
    parser.add_argument("--rtols", help="comma-separated tolerances, e.g. 1e-4,1e-6,1e-8")
    parser.add_argument("--solver", help="comma-separated solver names to compare")
    parser.add_argument("--accuracy", type=float, default=1e-4)
    parser.add_argument("--no-diagnose", action="store_true", help="skip measuring the solves")
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        if "" not in sys.path:
            sys.path.insert(0, "")  # MODULE may live in the current directory
        target = _load(args.target, "MODULE:FUNCTION")
        if not callable(target):
            raise _UsageError(f"{args.target} is not a function.")
        options = dict(
            methods=args.methods.split(",") if args.methods else None,
            rtols=[float(x) for x in args.rtols.split(",")] if args.rtols else None,
            solver=args.solver.split(",") if args.solver else None,
            accuracy=args.accuracy, diagnose=not args.no_diagnose,
        )
        if args.params:
            params = _load(args.params, "--params")
            params = params() if callable(params) else params
            report = check_gradient(target, params, **options)
        else:
            made = target()
            if isinstance(made, GradientReport):
                report = made
            elif isinstance(made, tuple) and len(made) == 2 and callable(made[0]):
                report = check_gradient(made[0], made[1], **options)
            else:
                raise _UsageError(
                    f"{args.target}() returned {type(made).__name__}; without --params it must "
                    "return a GradientReport or a (fun, params) pair."
                )
    except _UsageError as err:
        print(str(err), file=sys.stderr)
        return 2
    except (InputError, ValueError) as err:
        print(f"odelab check: {_short(err)}", file=sys.stderr)
        return 2
    print(report.to_json(indent=2) if args.json else str(report))
    return 0 if report.ok else 1
