"""`check_gradient`: is the gradient through my solver right, and if not, why?

The check answers first for the method(s) asked about — by default the method in use ("auto",
or the session's choice) — at the tolerance in use. Their gradient is compared with a reference:
the same objective differentiated by an accurate method at a tight tolerance (rtol 1e-12), the
method asked about itself when it differentiates the discrete solve exactly, whose own error is
estimated by running it again at 1e-11. That first verdict costs about one compile and a few
runs. The rest streams in after it, each part updating the report (`on_update=`, and in place
in a notebook cell while it runs):

* the convergence study over tolerances (no new compile: tolerances are traced values) and a
  recommendation,
* the solves inside `fun` measured: stiffness, sensitivity growth, spikes, interpolation,
* an independent cross-check of the reference by finite differences, their steps searched and
  carrying their own error estimate (shown as its own line, never as a verdict),
* when `methods` is not given, every other gradient method for comparison, one compile each.

    >>> report = ol.check_gradient(loss, params)
    >>> report.ok, report.headline, report.recommendation
    >>> print(report)            # or display it in a notebook
"""

from __future__ import annotations

import dataclasses
import html
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

from .. import _events
from .._compilations import compile_count
from .._errors import (
    InputError,
    MethodNotApplicableError,
    OdelabError,
    SolveError,
    unknown_name,
)
from .._inputs import (
    accepts,
    check_count,
    check_finite,
    check_flag,
    check_param_leaves,
    check_step,
    check_tolerance,
    float_array,
)
from .._progress import ProgressBar
from ..derivatives import (
    difference_estimate,
    flat_names,
    gradient,
    jvp,
    make_plan,
    split_params,
    tangent_like,
)
from ..solve import (
    DEFAULT_MAX_STEPS,
    DEFAULT_RTOL,
    METHODS,
    GradientMethod,
    choose_method,
    method_object,
    session_defaults,
    solve_defaults,
    solver_spec,
)
from ._html import badge, finite_or_none, number, table, text_table
from .diagnose import SolveDiagnosis, diagnose_solve, record_solves
from .inspect import AdjointInspection as AdjointInspection
from .inspect import inspect_adjoint as inspect_adjoint

DEFAULT_RTOLS = (1e-4, 1e-6, 1e-8, 1e-10)
REFERENCE_RTOL = 1e-12
REFERENCE_CHECK_RTOL = 1e-11  # the reference again, looser: the size of its own error
ATOL_PER_RTOL = 1e-2  # atol = rtol × this, as odelab's defaults (1e-6, 1e-8)
FORWARD_REFERENCE_MAX_PARAMS = 16  # beyond this the reference runs in reverse mode
FULL_FD_MAX_PARAMS = 32  # beyond this finite differences check one random direction only
MAX_STEPS_GROWTH = 8  # the reference's step budget grows by this when it runs out
MAX_STEPS_CEILING = 1 << 22  # ... up to this
AWAY = 0.01  # the point 1% away whose gradient sets the error scale
VERDICT_ORDER = ("accurate", "inaccurate", "unstable", "failed")
CHECKED, COMPARED = "checked", "compared"  # the roles of a row


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
    """The check of one (method, solver): values at the primary tolerance and the study.

    role: "checked" for the methods asked about (the report's verdict is theirs), "compared"
    for the other methods of the default study.
    """

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
    role: str = CHECKED
    chosen: str | None = None  # for "auto": the method it took for the solves diagnosed


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
class CrossCheck:
    """Finite differences of `fun` against the reference: independent of every AD method.

    agreement: ‖differences − reference‖ / scale; error: the differences' own error estimate
    (the disagreement of neighbouring steps) / scale; reference_error: the reference's.
    """

    label: str
    values: np.ndarray | None  # per parameter; None when checked along one random direction
    agreement: float | None
    error: float | None
    reference_error: float | None
    accuracy: float
    message: str = ""

    @property
    def status(self) -> str:
        """"agrees" (within the accuracy), "inconclusive" (apart by less than their own error
        estimates), "disagrees", or "failed"."""
        if self.agreement is None:
            return "failed"
        if self.agreement <= self.accuracy:
            return "agrees"
        margin = 3.0 * ((self.error or 0.0) + (self.reference_error or 0.0))
        return "inconclusive" if self.agreement <= margin else "disagrees"

    def sentence(self) -> str:
        if self.agreement is None:
            return f"Cross-check: {self.label} failed ({self.message}); the reference stands alone."
        own = (f" (their own error estimate {self.error:.2g})" if self.error is not None else "")
        head = f"Cross-check: {self.label} and the reference differ by {self.agreement:.2g}{own}"
        return head + {
            "agrees": ": the reference is confirmed independently to the accuracy "
                      f"{self.accuracy:g}.",
            "inconclusive": ", within the error of the differences: they cannot confirm the "
                            f"reference to {self.accuracy:g} here (the objective is too noisy or "
                            "too sharp for differences); the reference stands on its own estimate.",
            "disagrees": ", beyond both error estimates: one of the two is wrong. Check that `fun` "
                         "is smooth (no if/where on parameters, no rounding), or pass exact "
                         "reference values with reference=.",
        }[self.status]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "status": self.status, "agreement": self.agreement,
                "error": self.error, "reference_error": self.reference_error,
                "values": None if self.values is None else [float(x) for x in self.values],
                "message": self.message}


@dataclasses.dataclass
class GradientReport:
    """The result of `ol.check_gradient`: verdicts, errors, diagnosis and a recommendation.

    rows: one MethodCheck per (method, solver), the methods asked about first (role "checked")
    and, by default, every other method for comparison (role "compared"). `verdict` (also
    `overall`) is the worst verdict among the checked rows, `ok` is True when they are all
    accurate, and `headline` says so in one line; finite differences of `fun` cross-check the
    reference on their own line (`cross_check`). `names` are the flattened parameter names (or
    ["direction"] for a directional check). While the check runs, `pending` lists what is still
    to come. Display it in a notebook, print it, or `to_json()` it.
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
    reference_error: float | None = None  # the reference's own error estimate / scale
    cross_check: CrossCheck | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    pending: list[str] = dataclasses.field(default_factory=list)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def checked(self) -> list[MethodCheck]:
        """The rows of the methods asked about (the verdict is theirs)."""
        return [r for r in self.rows if r.role == CHECKED]

    @property
    def overall(self) -> str:
        """The worst verdict among the checked rows: "accurate", "inaccurate", "unstable",
        "failed" (or "pending" before the first one is in)."""
        verdicts = [r.verdict for r in self.checked]
        if not verdicts:
            return "pending" if self.pending else "failed"
        return max(verdicts, key=VERDICT_ORDER.index)

    @property
    def verdict(self) -> str:
        """The same as `overall`."""
        return self.overall

    @property
    def ok(self) -> bool:
        """True when every method asked about gave an accurate gradient."""
        return self.overall == "accurate"

    @property
    def complete(self) -> bool:
        """Whether every part of the check has run."""
        return not self.pending

    @property
    def headline(self) -> str:
        """The verdict on the methods asked about, in one line."""
        rows = self.checked
        if not rows:
            return "checking…" if self.pending else "FAILED: no method could be checked"
        if len(rows) == 1:
            r = rows[0]
            where = f" with {r.solver!r}" if r.solver else ""
            what = (f"error {r.error:.2g}, accurate means ≤ {self.accuracy:g}"
                    if r.error is not None else (r.notes[0] if r.notes else "no gradient"))
            return f"{r.label}{where} is {r.verdict.upper()} at rtol {r.rtol:g} ({what})"
        parts = [f"{r.label}{' with ' + repr(r.solver) if r.solver else ''} {r.verdict}"
                 + (f" ({r.error:.2g})" if r.error is not None else "") for r in rows]
        return (f"{self.overall.upper()} at rtol {rows[0].rtol:g}: {', '.join(parts)}; "
                f"accurate means ≤ {self.accuracy:g}")

    def row(self, label: str) -> MethodCheck:
        """The MethodCheck whose label (or method name) is `label`."""
        for r in self.rows:
            if label in (r.label, r.method):
                return r
        for r in self.rows:  # "auto"'s row stands for the method it took
            if label == r.chosen:
                return r
        raise KeyError(f"no method {label!r} in this report; have {[r.label for r in self.rows]}")

    # -- plain text ---------------------------------------------------------------------------
    def _header(self) -> list[str]:
        what = "one direction" if self.direction is not None else f"{len(self.names)} parameters"
        own = (f"; its own error, from rtol {REFERENCE_CHECK_RTOL:g} to {REFERENCE_RTOL:g}, is "
               f"≲ {self.reference_error:.2g}" if self.reference_error is not None else "")
        lines = [
            f"Gradient check of {self.fun_name} ({what}): {self.headline}.",
            f"Reference: {self.reference_label}{own}.",
        ]
        if self.cross_check is not None:
            lines.append(self.cross_check.sentence())
        lines.append(f"Errors are ‖g − g_ref‖ relative to {self.scale:.3g} ({self.scale_note}).")
        lines += self.notes
        if self.pending:
            lines.append(f"Still running: {', '.join(self.pending)}.")
        return lines

    def _study_cells(self, r: MethodCheck) -> list[str]:
        by = {p.rtol: p for p in r.study}
        return [number(by[t].error, 1) if t in by and by[t].error is not None else
                ("fail" if t in by else "") for t in self.rtols]

    def _time(self, r: MethodCheck) -> str:
        times = [p.seconds for p in r.study if p.rtol == r.rtol] or [p.seconds for p in r.study]
        return f"{times[0]:.2g} s" if times else ""

    def _role(self, r: MethodCheck) -> str:
        return r.role if any(x.role == COMPARED for x in self.rows) else ""

    def __str__(self) -> str:
        compared = any(r.role == COMPARED for r in self.rows)
        headers = ["method"] + (["role"] if compared else []) + [
            "solver", "rtol", "error", "verdict"] + [f"@{t:g}" for t in self.rtols] + ["time"]
        rows = [[r.label] + ([r.role] if compared else []) + [
            r.solver or "(fun's)", f"{r.rtol:g}", number(r.error, 1), r.verdict,
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
        header = self._header()
        title = (f"<div style='font-size:1.1em;margin-bottom:4px'><b>Gradient check of "
                 f"{html.escape(self.fun_name)}</b> {badge(self.overall)} "
                 f"{html.escape(self.headline)}</div>")
        meta = "".join(f"<div>{html.escape(x)}</div>" for x in header[1:])
        compared = any(r.role == COMPARED for r in self.rows)
        headers = ["method"] + (["role"] if compared else []) + [
            "solver", "rtol", "error", "verdict"] + [
            f"error @ rtol {t:g}" for t in self.rtols] + ["time"]
        rows = [[html.escape(r.label)] + ([r.role] if compared else []) + [
            html.escape(r.solver or "(fun's)"), f"{r.rtol:g}", number(r.error, 1),
            badge(r.verdict), *self._study_cells(r), self._time(r)] for r in self.rows]
        rows += [[f"<span style='opacity:0.6'>{html.escape(p)}</span>"]
                 + [""] * (len(headers) - 2) + ["<i style='opacity:0.6'>running…</i>"]
                 for p in self.pending]
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
        return finite_or_none({
            "fun": self.fun_name,
            "overall": self.overall,
            "verdict": self.verdict,
            "ok": self.ok,
            "headline": self.headline,
            "complete": self.complete,
            "pending": list(self.pending),
            "names": list(self.names),
            "direction": arr(self.direction),
            "reference": {"label": self.reference_label, "values": arr(self.reference),
                          "error": self.reference_error,
                          "finite_difference": arr(self.fd_values),
                          "fd_agreement": self.fd_agreement},
            "cross_check": None if self.cross_check is None else self.cross_check.to_dict(),
            "scale": self.scale,
            "scale_note": self.scale_note,
            "accuracy": self.accuracy,
            "rtols": list(self.rtols),
            "methods": [
                {"label": r.label, "method": r.method, "role": r.role, "solver": r.solver,
                 "rtol": r.rtol, "values": arr(r.values), "abs_errors": arr(r.abs_errors),
                 "error": r.error, "verdict": r.verdict, "order": r.order,
                 "notes": list(r.notes), "study": [dataclasses.asdict(p) for p in r.study]}
                for r in self.rows
            ],
            "diagnosis": list(self.diagnosis),
            "notes": list(self.notes),
            "solves": [d.to_dict() for d in self.solves],
            "recommendation": None if self.recommendation is None else
            dataclasses.asdict(self.recommendation),
            "seconds": dict(self.seconds),
        })

    def to_json(self, **kwargs: Any) -> str:
        """`to_dict()` as JSON text (kwargs go to json.dumps, e.g. indent=2)."""
        return json.dumps(self.to_dict(), **kwargs)


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
def _label(m: GradientMethod | str) -> str:
    if isinstance(m, str):
        return m
    step = getattr(m, "step", None)
    if m.name == "finite-difference" and (step is not None or not m.richardson):
        parts = ([f"step={step:g}" if not isinstance(step, str) else f"step={step!r}"]
                 if step is not None else []) + ([] if m.richardson else ["richardson=False"])
        return f"finite-difference({', '.join(parts)})"
    return m.name


def _in_use() -> GradientMethod | str:
    """The method a derivative call without `method=` takes: the session's, else "auto"."""
    chosen = session_defaults().get("method")
    return "auto" if chosen is None else method_object(chosen)


def _methods(methods: Any) -> list[GradientMethod | str]:
    if methods is None:
        return [_in_use()]
    if isinstance(methods, (str, GradientMethod)):
        methods = [methods]
    try:
        out = [method_object(m) for m in methods]
    except TypeError as err:
        raise InputError(f"`methods` must be a method or a list of methods such as "
                         f"['checkpoint', 'forward']; got {methods!r}.") from err
    except InputError as err:  # an unknown name: say which argument holds it
        raise InputError(f"`methods` holds a name that is not a method: {err}") from None
    if not out:
        raise InputError("`methods` is empty; give at least one method, or None for the method "
                         "in use.")
    return out


def _compared(asked: list, compare: Any) -> list[GradientMethod]:
    """The methods compared after the verdict (one compile each): every other method that
    gives gradients (compare=True), none (False), or those listed."""
    if compare is False:
        return []
    if compare is True:
        names = {_label(m) for m in asked}
        return [cls() for name, cls in METHODS.items()
                if cls.capabilities.supports("gradient") and name not in names]
    listed = [compare] if isinstance(compare, (str, GradientMethod)) else compare
    try:
        out = [method_object(m) for m in listed]
    except TypeError as err:
        raise InputError(f"`compare` must be True, False or a list of methods; got "
                         f"{compare!r}.") from err
    except InputError as err:
        raise InputError(f"`compare` holds a name that is not a method: {err}") from None
    if any(m == "auto" for m in out):
        raise InputError("`compare` lists 'auto'; name the methods to compare with, e.g. "
                         "compare=['checkpoint', 'forward'].")
    return out


def _rtols(rtols: Any, rtol: float) -> tuple[float, ...]:
    values = DEFAULT_RTOLS if rtols is None else rtols
    try:
        values = sorted({float(r) for r in values} | {float(rtol)}, reverse=True)
    except (TypeError, ValueError) as err:
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
    solvers = list(solver) if isinstance(solver, (list, tuple)) else []
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
    return tangent_like(diff, direction, "direction")


def _reference_values(reference: Any, diff: Any, n: int) -> np.ndarray:
    """Exact gradient values given as `reference`, flat, checked against the parameters."""
    if n == 1 and np.isscalar(reference) and not isinstance(reference, (bool, np.bool_, str)):
        values = float_array("reference", reference).reshape(1)
        check_finite("reference", values)
        return values
    check_param_leaves(reference, "reference")
    return _flat(tangent_like(diff, reference, "reference"))


def _scale(scale: Any) -> Any:
    if isinstance(scale, str) and scale == "auto":
        return scale
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, (int, float, np.number)) or (
            not math.isfinite(scale) or scale <= 0):
        raise InputError(f"`scale={scale!r:.60}` must be 'auto' or a positive finite number (the "
                         "size errors are relative to).")
    return float(scale)


def _atol(rtol: float, atol: Any) -> float:
    return rtol * ATOL_PER_RTOL if atol is None else float(atol)


def _trusted(method: GradientMethod | str) -> bool:
    """Whether `method` at a tight tolerance makes a reference: it differentiates the discrete
    solve exactly (or controls the sensitivities' error, forward-sensitivity; or is "auto",
    which takes one of those)."""
    if isinstance(method, str):
        return method == "auto"
    return method.capabilities.exact or method.name == "forward-sensitivity"


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text[:300]}"


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
    compare: Any = None,
    max_steps: int | None = None,
    on_update: Callable[[GradientReport], None] | None = None,
    progress: Any = "auto",
) -> GradientReport:
    """Check the gradient of `fun` (which calls `ol.solve`) at `params`; see GradientReport.

    methods: the method(s) to check, names or method objects, e.g. ["checkpoint", "forward",
      ol.methods.FiniteDifference(step=1e-3)]. Default: the method in use ("auto", or the
      session's), with every other method compared after it (see `compare`). The report's
      verdict is about these methods.
    rtols: the tolerances of the convergence study (default 1e-4, 1e-6, 1e-8, 1e-10); `rtol`
      (default odelab's 1e-6) is the one whose result sets each method's verdict.
    reference: "auto" — the first method checked itself at rtol 1e-12 when it differentiates
      the discrete solve exactly ("auto", checkpoint, direct, forward, forward-sensitivity), else
      forward-sensitivity (checkpoint beyond 16 parameters) — a method, or known exact gradient
      values shaped like params. Its own error is estimated from a run at rtol 1e-11, and
      finite differences cross-check it.
    direction: None for the full gradient, or a pytree shaped like params (or "random": a seeded
      random unit direction whose components scale with the parameters) to check only the
      directional derivative ∇fun·direction: one jvp per method, cheap for big models.
    solver: a solver name or a list of them to compare; None keeps whatever `fun`'s solves use.
    atol: fixed absolute tolerance; by default atol = rtol × 1e-2 at every rtol.
    accuracy: the largest relative error called accurate.
    scale: what errors are relative to. "auto": the larger of |∇fun| at params and at a point
      1% away (each parameter moved by 1% of its size, alternately up and down), so a gradient
      that should be zero, at a minimum, is judged against its neighbourhood; or a number.
    diagnose: measure the solves inside `fun` (stiffness, growth, spikes); off saves time.
    compare: also check every other gradient method, one compile each, after the verdict
      (True; the default when `methods` is None), none (False), or the methods listed.
    max_steps: the step budget of the solves inside `fun` during the check (None: theirs). The
      reference's solves at rtol 1e-12 get more when they run out (×8 at a time, up to 4M
      steps), and the report says so.
    on_update: called with the report (updated in place) after every part: the first verdict,
      each row, the diagnosis, the cross-check. In a notebook cell the report also shows and
      updates in place while the check runs (progress=False turns that off; progress=True
      draws a progress bar in a terminal).

    Only solves that do not name their own method/rtol/solver are varied: a `fun` that fixes
    `rtol=` inside shows a flat convergence study, and the diagnosis says so.
    """
    if not callable(fun):
        raise InputError(f"`fun` must be a function of the parameters; got {type(fun).__name__}.")
    if on_update is not None and not accepts(on_update, 1):
        raise InputError(f"`on_update` must be a function of the report; got {on_update!r}.")
    accuracy = check_step("accuracy", accuracy, example="accuracy=1e-4")
    rtol = check_tolerance("rtol", rtol)
    diagnose = check_flag("diagnose", diagnose)
    if atol is not None:
        atol = check_tolerance("atol", atol)
    max_steps = check_count("max_steps", max_steps, example=100000)
    # the options travel with the objective, so the lab's "check again" repeats this very check
    _events.emit(_events.OBJECTIVE, fun=fun, params=params, source="check", options=dict(
        methods=methods, rtols=rtols, reference=reference, direction=direction, solver=solver,
        rtol=rtol, atol=atol, accuracy=accuracy, scale=scale, diagnose=diagnose,
        compare=compare, max_steps=max_steps))
    run = _Check(fun, params, methods=methods, rtols=rtols, reference=reference,
                 direction=direction, solver=solver, rtol=rtol, atol=atol, accuracy=accuracy,
                 scale=scale, diagnose=diagnose, compare=compare, max_steps=max_steps,
                 on_update=on_update, progress=progress)
    report = run.run()
    _events.emit(_events.CHECKED, fun=fun, params=params, report=report)
    return report


class _Check:
    """One gradient check, run part by part; `report` is updated in place after each part."""

    def __init__(self, fun, params, *, methods, rtols, reference, direction, solver, rtol, atol,
                 accuracy, scale, diagnose, compare, max_steps, on_update, progress):
        diff, _ = split_params(params)
        self.fun, self.params, self.diff = fun, params, diff
        self.n = int(sum(np.size(x) for x in jax.tree_util.tree_leaves(diff)))
        self.asked = _methods(methods)
        self.compared = _compared(self.asked, methods is None if compare is None else compare)
        self.study_rtols = _rtols(rtols, rtol)
        self.rtol, self.atol, self.accuracy = float(rtol), atol, float(accuracy)
        self.solvers = _solvers(solver)
        self.direction = None if direction is None else _direction(direction, diff)
        self.reference_values = None
        if isinstance(reference, str):
            if reference not in ("auto", *METHODS):
                raise unknown_name("reference", reference, ("auto", *METHODS))
        elif not isinstance(reference, GradientMethod):
            self.reference_values = _reference_values(reference, diff, self.n)
        self.reference_arg, self.scale_arg, self.diagnose = reference, _scale(scale), diagnose
        self.max_steps = max_steps  # for every solve of the check (None: the solves' own)
        self.reference_steps = max_steps  # the reference's, raised when it runs out
        self.on_update = on_update
        self.start = time.perf_counter()
        self.live = _Live(progress)
        names = ["direction"] if self.direction is not None else flat_names(params)
        self.report = GradientReport(
            fun_name=getattr(fun, "__name__", type(fun).__name__), names=names,
            direction=None if self.direction is None else _flat(self.direction),
            reference_label="(computing)", reference=np.full(len(names), np.nan),
            fd_values=None, fd_agreement=None, scale=float("nan"), scale_note="",
            accuracy=self.accuracy, rtols=self.study_rtols, rows=[], diagnosis=[], solves=[],
            recommendation=None,
            pending=["reference"] + [self._row_name(m, s) for s in self.solvers
                                     for m in self.asked]
            + (["diagnosis"] if diagnose else []) + ["cross-check"]
            + [self._row_name(m, s) for s in self.solvers for m in self.compared],
        )

    def _row_name(self, method, solver) -> str:
        return _label(method) + (f" with {solver!r}" if solver else "")

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, method, rtol, solver, at=None, *, steps=None) -> np.ndarray:
        """The flat gradient (or [directional derivative]) of fun by `method` at `rtol`."""
        at = self.params if at is None else at
        atol = _atol(rtol, self.atol)
        steps = self.max_steps if steps is None else steps
        if self.direction is None:
            return _flat(gradient(self.fun, at, method=method, rtol=rtol, atol=atol,
                                  solver=solver, max_steps=steps))
        _, d = jvp(self.fun, at, self.direction, method=method, rtol=rtol, atol=atol,
                   solver=solver, max_steps=steps)
        return np.atleast_1d(np.asarray(d, dtype=float))

    def tight(self, compute: Callable[[int | None], Any]) -> Any:
        """compute(max_steps) at the reference's step budget, raised while it runs out."""
        while True:
            try:
                return compute(self.reference_steps)
            except SolveError as err:
                if getattr(err, "result", None) != "max_steps_reached":
                    raise
                current = self.reference_steps or DEFAULT_MAX_STEPS
                if current >= MAX_STEPS_CEILING:
                    raise SolveError(
                        f"The check's reference solves (rtol {REFERENCE_RTOL:g}) ran out of "
                        f"steps even at max_steps={current}. Pass reference= (a method at a "
                        "looser rtol is not a reference; exact values are), or a stiff solver "
                        "with solver=..."
                    ) from err
                self.reference_steps = min(current * MAX_STEPS_GROWTH, MAX_STEPS_CEILING)
                self.report.notes[:] = [n for n in self.report.notes if "ran out" not in n] + [
                    f"The reference's solves at rtol {REFERENCE_RTOL:g} ran out of steps at "
                    f"max_steps={current}; the check gave them max_steps="
                    f"{self.reference_steps} (set it with check_gradient(..., max_steps=...))."]

    # -- streaming ----------------------------------------------------------------------------
    def done(self, part: str | None = None) -> None:
        """`part` has run (or a row has its first value): refresh what is derived from the parts
        (diagnosis, recommendation, times) and show the report."""
        r = self.report
        if part in r.pending:
            r.pending.remove(part)
        r.diagnosis = _diagnosis(r, self.rtol, self.diagnose)
        r.recommendation = _recommend(r.rows, r.solves, self.accuracy, r.reference_label)
        elapsed = time.perf_counter() - self.start
        if r.checked:
            r.seconds.setdefault("first verdict", elapsed)
            if not any(self._row_name(m, s) in r.pending for s in self.solvers
                       for m in self.asked):
                r.seconds.setdefault("verdicts", elapsed)
        if not r.pending:
            r.seconds["total"] = elapsed
        self.live.update(r)
        if self.on_update is not None:
            self.on_update(r)

    # -- the parts ----------------------------------------------------------------------------
    def run(self) -> GradientReport:
        try:
            self._reference()
            first = True
            for s in self.solvers:
                for m in self.asked:
                    self._row(m, s, CHECKED, first_verdict=first)
                    first = False
            if self.diagnose:
                self._diagnose()
            self._cross_check()
            for s in self.solvers:
                for m in self.compared:
                    self._row(m, s, COMPARED)
        finally:
            self.live.close(self.report)
        return self.report

    def _reference_method(self) -> GradientMethod | str:
        first = self.asked[0]
        if _trusted(first):
            return first
        if "forward-sensitivity" in METHODS and self.n <= FORWARD_REFERENCE_MAX_PARAMS:
            return METHODS["forward-sensitivity"]()
        return METHODS["checkpoint"]()

    def _reference(self) -> None:
        r, ref = self.report, self.reference_arg
        solver = self.solvers[0]
        if self.reference_values is not None:
            r.reference, r.reference_label = self.reference_values, "the exact values given"
            r.reference_error = 0.0
            self.ref_method = None
            r.scale, r.scale_note = self._scale(None)
            self.done("reference")
            return
        method = self._reference_method() if ref == "auto" else method_object(ref)
        try:
            values = self.tight(lambda steps: self.evaluate(method, REFERENCE_RTOL, solver,
                                                            steps=steps))
        except MethodNotApplicableError:
            if ref != "auto":
                raise
            method = METHODS["checkpoint"]()  # e.g. a delay equation: the sensitivity methods
            values = self.tight(lambda steps: self.evaluate(method, REFERENCE_RTOL, solver,
                                                            steps=steps))
        self.ref_method = method
        same = any(_label(method) == _label(m) for m in self.asked[:1])
        solver_note = f", solver {solver!r}" if solver else ""
        r.reference = values
        r.reference_label = (f"{_label(method)} at rtol={REFERENCE_RTOL:g}{solver_note}"
                             + (" (the method checked, at a tight tolerance)" if same else ""))
        r.scale, r.scale_note = self._scale(method)
        self.done("reference")

    def _reference_error(self) -> None:
        """The reference again at a looser tolerance: how much it still moves."""
        r = self.report
        if self.ref_method is None or r.reference_error is not None:
            return
        try:
            looser = self.tight(lambda steps: self.evaluate(
                self.ref_method, REFERENCE_CHECK_RTOL, self.solvers[0], steps=steps))
        except Exception:  # the estimate is advisory
            return
        r.reference_error = float(np.linalg.norm(looser - r.reference) / r.scale)

    def _scale(self, method) -> tuple[float, str]:
        ref = self.report.reference
        here = float(np.linalg.norm(ref))
        if self.scale_arg != "auto":
            return float(self.scale_arg), "the scale given"
        if method is None:
            value, note = here, "|∇fun| of the exact values given"
        else:
            diff, static = split_params(self.params)
            flat, unravel = ravel_pytree(diff)
            size = np.abs(np.asarray(flat))
            size = np.maximum(size, 1e-2 * (size.mean() + 1e-12))
            signs = np.where(np.arange(flat.shape[0]) % 2 == 0, 1.0, -1.0)
            away = eqx.combine(unravel(flat + AWAY * signs * size), static)
            try:
                there = float(np.linalg.norm(self.tight(lambda steps: self.evaluate(
                    method, REFERENCE_RTOL, self.solvers[0], at=away, steps=steps))))
            except Exception:
                there = float("nan")
            where = ("at params moved by 1% of their size, alternately up and down")
            if not np.isfinite(there) or there <= here:
                value, note = here, f"|∇fun| here; {where} it is {there:.3g}"
            else:
                value, note = there, f"the larger of |∇fun| here, {here:.3g}, and {where}, " \
                                     f"{there:.3g}"
        if not np.isfinite(value) or value == 0:
            return 1.0, "absolute errors: the reference gradient is zero here"
        return value, note

    def _row(self, method, solver, role, *, first_verdict: bool = False) -> None:
        r = self.report
        name = self._row_name(method, solver)
        label = _label(method)
        row = MethodCheck(label=label, method=label if isinstance(method, str) else method.name,
                          solver=solver, rtol=self.rtol, values=None, error=None,
                          verdict="failed", study=[], order=None, notes=[], role=role)
        row._ref = r.reference
        before, start = compile_count(), time.perf_counter()
        failure = ""
        try:
            row.values = self.evaluate(method, self.rtol, solver)
        except MethodNotApplicableError as err:
            if role == COMPARED:  # a method for another kind of system: left out
                self.done(name)
                return
            failure = _short(err)
        except Exception as err:
            failure = _short(err)
        seconds = time.perf_counter() - start
        primary = StudyPoint(self.rtol, None, seconds if compile_count() == before else math.nan,
                             failure)
        if not failure:
            primary.error = _error(row.values, r.reference, r.scale)
            if primary.error is None:
                primary.message = "non-finite gradient (NaN/inf)"
        row.study = [primary]
        row.error = primary.error
        row.verdict, row.notes = _verdict(primary, row.study, None, self.accuracy, failure)
        r.rows.append(row)
        if first_verdict:  # shown before its study: the study needs no verdict to wait for
            self.done()
            self._reference_error()
            self.done()
        for t in self.study_rtols:
            if t == self.rtol and (failure or not math.isnan(primary.seconds)):
                continue
            start = time.perf_counter()
            try:
                values = self.evaluate(method, t, solver)
                err, msg = _error(values, r.reference, r.scale), ""
                if err is None:
                    msg = "non-finite gradient (NaN/inf)"
            except Exception as e:
                err, msg = None, _short(e)
            point = StudyPoint(t, err, time.perf_counter() - start, msg)
            if t == self.rtol:
                primary.seconds = point.seconds
            else:
                row.study.append(point)
        row.study.sort(key=lambda p: -p.rtol)
        row.order = _order(row.study)
        row.verdict, row.notes = _verdict(primary, row.study, row.order, self.accuracy, failure)
        self.done(name)

    def _diagnose(self) -> None:
        self.report.solves = _diagnose_solves(self.fun, self.params, self.solvers, self.rtol,
                                              self.atol, self.max_steps)
        self._note_auto()
        self.done("diagnosis")

    def _note_auto(self) -> None:
        """Say which method "auto" took for the solves diagnosed."""
        rows = [row for row in self.report.rows if row.method == "auto"]
        solves = self.report.solves
        if not rows or not solves or len(self.solvers) > 1:  # per solver it may differ
            return
        request = "gradient" if self.direction is None else "jvp"
        plan, _, _ = make_plan(request, self.params, "auto")
        try:
            stiff = any(solver_spec(d.solver).stiff for d in solves)
            chosen = choose_method(plan.route, stiff=stiff).name
        except Exception:  # a solver outside odelab's list: say nothing rather than guess
            return
        for row in rows:
            row.chosen = chosen
            note = (f"auto takes {chosen!r} here: {plan.route[0]} mode for {self.n} parameters"
                    + (f" (this row stands for {chosen!r} in the comparison)"
                       if any(m.name == chosen for m in self.compared) else ""))
            if note not in row.notes:
                row.notes.insert(0, note)
        # the comparison need not compile the same gradient again
        kept = [m for m in self.compared if m.name != chosen]
        for m in self.compared:
            if m.name == chosen:
                for s in self.solvers:
                    if self._row_name(m, s) in self.report.pending:
                        self.report.pending.remove(self._row_name(m, s))
        self.compared = kept

    def _cross_check(self) -> None:
        r = self.report
        label = (f"finite differences (steps searched, Richardson) at rtol {REFERENCE_RTOL:g}")
        solver = self.solvers[0]
        try:
            if self.direction is None and self.n > FULL_FD_MAX_PARAMS:
                v = _direction("random", self.diff)
                est = self.tight(lambda steps: difference_estimate(
                    self.fun, self.params, v, rtol=REFERENCE_RTOL,
                    atol=_atol(REFERENCE_RTOL, self.atol), solver=solver, max_steps=steps))
                expected = float(r.reference @ _flat(v))
                values, agreement = None, abs(float(est.values[0]) - expected) / r.scale
                label += " along one random direction"
            else:
                est = self.tight(lambda steps: difference_estimate(
                    self.fun, self.params, self.direction, rtol=REFERENCE_RTOL,
                    atol=_atol(REFERENCE_RTOL, self.atol), solver=solver, max_steps=steps))
                values = est.values
                agreement = float(np.linalg.norm(values - r.reference) / r.scale)
            error = float(np.linalg.norm(est.errors) / r.scale)
            if not np.isfinite(agreement):
                raise OdelabError("the differences are not finite")
            r.cross_check = CrossCheck(label, values, agreement, error, r.reference_error,
                                       self.accuracy)
        except Exception as err:  # the cross-check is advisory; its failure is reported
            r.cross_check = CrossCheck(label, None, None, None, r.reference_error,
                                       self.accuracy, _short(err))
        r.fd_values, r.fd_agreement = r.cross_check.values, r.cross_check.agreement
        self.done("cross-check")


def _error(values: np.ndarray, ref: np.ndarray, scale: float) -> float | None:
    if values is None or not np.all(np.isfinite(values)):
        return None
    return float(np.linalg.norm(values - ref) / scale)


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
# showing the report while it runs
# --------------------------------------------------------------------------------------------
def _executing_cell() -> Any:
    """The IPython shell when a notebook cell is executing now (not a comm message), else None."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    header = (getattr(shell, "parent_header", None) or {}).get("header", {})
    return shell if header.get("msg_type") == "execute_request" else None


class _Live:
    """The partial report shown while the check runs: in a notebook cell one display updated
    in place, ending as a one-line summary (the report itself is the cell's value); with
    progress=True outside a notebook, a progress bar on stderr."""

    def __init__(self, progress: Any):
        if progress not in ("auto", True, False):
            raise InputError(f"`progress={progress!r}`: give True, False or 'auto'.")
        self.handle = self.bar = None
        self.parts = 0
        if progress is False:
            return
        if _executing_cell() is not None:
            from IPython.display import HTML, display  # only in a kernel, where it exists

            self._html = HTML
            self.handle = display(HTML("<i>Checking the gradient…</i>"), display_id=True)
        elif progress is True:
            self.bar = ProgressBar(1, desc="check_gradient")

    def update(self, report: GradientReport) -> None:
        if self.handle is not None:
            self.handle.update(self._html(report._repr_html_()))
        elif self.bar is not None:
            done = len(report.rows) + (report.cross_check is not None) + bool(report.solves)
            self.bar.total = done + len(report.pending)
            self.bar.update(done - self.bar.n, verdict=report.overall)

    def close(self, report: GradientReport) -> None:
        if self.handle is not None:
            seconds = report.seconds
            first = seconds.get("first verdict")
            summary = (f"Gradient check of {report.fun_name}: {report.headline}"
                       + (f" — first verdict after {first:.1f} s" if first is not None else "")
                       + (f", complete after {seconds['total']:.1f} s" if "total" in seconds
                          else ", interrupted"))
            self.handle.update(self._html(f"<div style='opacity:0.8'>{badge(report.overall)} "
                                          f"{html.escape(summary)}</div>"))
        elif self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------------------------
# diagnosis and recommendation
# --------------------------------------------------------------------------------------------
def _diagnose_solves(fun, params, solvers, rtol, atol, max_steps) -> list[SolveDiagnosis]:
    out = []
    for s in solvers:
        with record_solves() as seen, solve_defaults(
            solver=s, rtol=rtol, atol=_atol(rtol, atol), max_steps=max_steps
        ):
            try:
                fun(params)
            except Exception:
                pass  # the method rows already report failures
        # the first few distinct solves are enough to characterise the problem
        for rec in seen[:3]:
            out.append(diagnose_solve(rec, tight_rtol=REFERENCE_RTOL))
    return out


def _diagnosis(report: GradientReport, rtol: float, diagnose: bool) -> list[str]:
    rows, solves, accuracy = report.rows, report.solves, report.accuracy
    lines = []
    if report.reference_error is not None and report.reference_error > 0.1 * accuracy:
        lines.append(
            f"The reference still moves by {report.reference_error:.2g} between rtol "
            f"{REFERENCE_CHECK_RTOL:g} and {REFERENCE_RTOL:g}: errors below that are not "
            f"resolved, so verdicts at accuracy {accuracy:g} are uncertain.")
    for r in rows:
        where = f" with {r.solver!r}" if r.solver else ""
        head = f"{r.label}{where}" + (" (compared)" if r.role == COMPARED else "") + \
            f": {r.verdict}"
        if r.error is not None:
            head += f", error {r.error:.2g} at rtol {r.rtol:g}"
            if r.order is not None:
                head += f" (error ∝ rtol^{r.order:.2f} over the study)"
        lines.append(head + ("; " + "; ".join(r.notes) if r.notes else "") + ".")
    measured = [r for r in rows if r.error is not None and len(r.study) > 1]
    flat = [r for r in measured if len({p.error for p in r.study if p.error is not None}) == 1
            and len([p for p in r.study if p.error is not None]) > 1 and r.error > 0]
    if flat and len(flat) == len(measured):
        lines.append("Changing rtol changed no gradient at all: `fun` probably passes its own "
                     "rtol= (or method=) to ol.solve. Remove them there so the check (and "
                     "ol.gradient's rtol=) can set them.")
    for d in solves:
        measured = {}
        for r in rows:
            if r.solver in (None, d.solver):
                for name in (r.method, r.chosen):
                    if name is not None:
                        measured.setdefault(name, (r.verdict, r.error,
                                                   {p.rtol: p.error for p in r.study}))
        lines.extend(d.lines(measured=measured))
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
    if diagnose and not solves and "diagnosis" not in report.pending:
        lines.append("No concrete ol.solve was seen when calling fun(params) (is fun wrapped in "
                     "jax.jit, or does it solve without ol.solve?), so the solves could not be "
                     "diagnosed.")
    return lines


def _recommend(rows, solves, accuracy, ref_label) -> Recommendation | None:
    if not rows:
        return None
    candidates = []
    for r in rows:
        # a method whose gradient blew up or failed somewhere in the study is recommended
        # only where no steadier one meets the accuracy at that tolerance
        erratic = any(p.error is None or p.error > 1.0 for p in r.study)
        for p in r.study:
            if p.error is not None and p.error <= accuracy:
                seconds = p.seconds if not math.isnan(p.seconds) else math.inf
                candidates.append((-p.rtol, erratic, seconds, r, p))
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
    candidates.sort(key=lambda c: (c[0], c[1], c[2]))
    _, erratic, seconds, row, point = candidates[0]
    others = [c for c in candidates if c[4].rtol == point.rtol and c[3] is not row]
    compare = "; ".join(f"{c[3].label}: {c[2]:.2g} s" for c in others[:3] if c[2] < math.inf)
    timing = f"{seconds:.2g} s per gradient" if seconds < math.inf else "not yet timed"
    why = (
        f"the loosest tolerance at which a method's gradient error ({point.error:.2g}) is within "
        f"accuracy {accuracy:g}, and the fastest method there ({timing}"
        + (f"; {compare}" if compare else "") + ")"
        + (" whose gradient did not blow up or fail elsewhere in the study." if not erratic
           and any(c[1] for c in others) else ".")
    )
    failing = [r.label for r in rows if r.verdict != "accurate" and r.role == CHECKED]
    if failing:
        why += f" At rtol {rows[0].rtol:g}, not accurate: {', '.join(failing)}."
    return Recommendation(method=row.label, solver=row.solver, rtol=point.rtol,
                          why=why + stiff_note, verified=True)
