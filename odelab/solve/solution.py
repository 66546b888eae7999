"""`Solution`: what `ol.solve` returns — saved states, status, statistics, exports."""

from __future__ import annotations

import html
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import InputError, closest

GRID_TOO_SHORT = 101
"""odelab's own result code (diffrax's are small integers): a delay solve's breakpoint grid fell
short of the end of t_span."""

FIELD_NOT_FINITE = 102
"""odelab's own result code: the vector field is NaN or inf at the start (t0, y0), so the solve
cannot have meant anything (diffrax would report max_steps, or a fixed-step solve a NaN state)."""

_RESULT_NAMES = {
    int(diffrax.RESULTS.successful._value): "successful",
    int(diffrax.RESULTS.max_steps_reached._value): "max_steps_reached",
    int(diffrax.RESULTS.dt_min_reached._value): "dt_min_reached",
    GRID_TOO_SHORT: "delay grid too short (raise max_intervals of the DelaySystem)",
    FIELD_NOT_FINITE: "the vector field is not finite (NaN or inf) at the start",
}


def _no_gradient(tree: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda x: jax.lax.stop_gradient(x) if isinstance(x, jax.Array) else x, tree)


def check_start(sol: Solution, field: Any, t0: Any, y0: Any, args: Any) -> Solution:
    """`sol` marked FIELD_NOT_FINITE, stopped at (t0, y0), when field(t0, y0, args) is NaN or
    inf: inside the compiled program, so derivative calls learn it too (one field evaluation,
    never differentiated)."""
    t0, y0, args = _no_gradient((t0, y0, args))
    dy = field(t0, y0, args)
    bad = ~jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(dy)]))
    return eqx.tree_at(
        lambda s: (s.result, s.t_reached, s.y_reached), sol,
        (jnp.where(bad, FIELD_NOT_FINITE, sol.result).astype(jnp.asarray(sol.result).dtype),
         jnp.where(bad, t0, sol.t_reached).astype(jnp.asarray(sol.t_reached).dtype),
         jnp.where(bad, y0, sol.y_reached).astype(jnp.asarray(sol.y_reached).dtype)))


def result_name(code: int) -> str:
    return _RESULT_NAMES.get(int(code), f"failed (diffrax result {int(code)})")


class Solution(eqx.Module):
    """The result of `ol.solve`.

    `ts` (n,) and `ys` (n, n_states) are the saved times and states; `sol["x"]` is one state's
    trajectory. `ok` and `message` tell whether the solve reached the end; `stats` counts steps.
    A Solution is a JAX pytree, so it can be returned from jitted and differentiated functions.
    """

    ts: jax.Array
    ys: jax.Array
    t_reached: jax.Array
    y_reached: jax.Array
    result: jax.Array
    num_steps: jax.Array
    num_accepted: jax.Array
    num_rejected: jax.Array
    dense: diffrax.Solution | None = None
    states: tuple[str, ...] = eqx.field(static=True, default=())
    system_name: str = eqx.field(static=True, default="")
    solver: str = eqx.field(static=True, default="")
    method: str = eqx.field(static=True, default="")
    max_steps: int = eqx.field(static=True, default=0)
    stages: int = eqx.field(static=True, default=1)
    solver_reason: str = eqx.field(static=True, default="")
    method_reason: str = eqx.field(static=True, default="")
    failure_hint: str = eqx.field(static=True, default="")
    # ol.solve_ensemble: "shared" (one stacked state, one step size) or "per-member", and why
    layout: str = eqx.field(static=True, default="")

    # -- access -----------------------------------------------------------------------------
    def __getitem__(self, state: str) -> jax.Array:
        if isinstance(state, str):
            if state not in self.states:
                raise InputError(
                    f"{state!r} is not a state of {self.system_name!r}."
                    f"{closest(state, self.states)} States: {', '.join(self.states)}."
                )
            return self.ys[:, self.states.index(state)]
        raise InputError(
            f"Index a Solution by state name, e.g. sol[{self.states[0]!r}]; for arrays use "
            "sol.ys[...]."
        )

    def evaluate(self, t: Any) -> jax.Array:
        """The state at time(s) `t` from the dense interpolant (needs `saveat="dense"`)."""
        if self.dense is None:
            raise InputError(
                "`evaluate` needs the dense solution; solve with saveat='dense' to keep it."
            )
        if not isinstance(t, jax.core.Tracer):
            times = np.asarray(t, dtype=float)
            if not np.all(np.isfinite(times)):
                bad = times[~np.isfinite(times)].flat[0]
                raise InputError(f"`t` holds a non-finite time ({bad}); give finite times inside "
                                 "t_span.")
        t = jnp.asarray(t)
        if t.ndim == 0:
            return self.dense.evaluate(t)
        return jax.vmap(self.dense.evaluate)(t)

    # -- status -------------------------------------------------------------------------------
    @property
    def ok(self) -> Any:
        """True when the solve reached the end time (a traced bool inside transforms)."""
        success = diffrax.RESULTS.successful._value
        if isinstance(self.result, jax.core.Tracer) or isinstance(self.y_reached, jax.core.Tracer):
            return (self.result == success) & jnp.all(jnp.isfinite(self.y_reached))
        # concrete: numpy, so that checking a result dispatches no JAX work
        return bool(np.asarray(self.result) == int(success)) and bool(
            np.all(np.isfinite(np.asarray(self.y_reached)))
        )

    @property
    def message(self) -> str:
        """What happened, in words, with what to try when the solve failed."""
        try:
            code = int(self.result)
            t = float(self.t_reached)
            finite = bool(jnp.all(jnp.isfinite(self.y_reached)))
        except jax.errors.ConcretizationTypeError:
            return "(status is known only after the traced computation runs)"
        if code == int(diffrax.RESULTS.successful._value) and finite:
            return f"Solved {self.system_name!r} with solver={self.solver!r} to t={t:g}."
        return self.failure_hint or f"solve failed: {result_name(code)} at t={t:g}."

    @property
    def stats(self) -> dict[str, int]:
        """Steps taken, accepted and rejected, and vector-field evaluations (stages × steps)."""
        steps = int(self.num_steps)
        return {
            "steps": steps,
            "accepted": int(self.num_accepted),
            "rejected": int(self.num_rejected),
            "fevals": steps * self.stages,
            "max_steps": self.max_steps,
        }

    # -- export -------------------------------------------------------------------------------
    def to_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """(ts, ys) as numpy arrays."""
        return np.asarray(self.ts), np.asarray(self.ys)

    def to_pandas(self):
        """A pandas DataFrame indexed by time with one column per state."""
        import pandas as pd

        ts, ys = self.to_numpy()
        return pd.DataFrame(ys, index=pd.Index(ts, name="t"), columns=list(self.states))

    def __repr__(self) -> str:
        try:
            n = self.ts.shape[0]
            status = "ok" if self.ok is True else "FAILED"
            return (
                f"Solution({self.system_name!r}, {n} points, t∈[{float(self.ts[0]):g}, "
                f"{float(self.ts[-1]):g}], solver={self.solver!r}, method={self.method!r}, "
                f"{status}, steps={int(self.num_steps)})"
            )
        except (jax.errors.ConcretizationTypeError, TypeError):
            return f"Solution({self.system_name!r}, traced)"

    def _repr_html_(self) -> str:
        ts, ys = self.to_numpy()
        ok = self.ok is True
        badge = (
            '<span style="background:#1a7f37;color:white;padding:1px 6px;border-radius:8px">ok'
            "</span>"
            if ok
            else '<span style="background:#cf222e;color:white;padding:1px 6px;border-radius:8px">'
            "failed</span>"
        )
        stats = self.stats
        head = "".join(f"<th>{html.escape(s)}</th>" for s in ("t",) + self.states)
        picks = sorted(set([0, 1, 2, len(ts) // 2, len(ts) - 2, len(ts) - 1]) & set(range(len(ts))))
        rows = "".join(
            "<tr>" + "".join(f"<td>{v:.6g}</td>" for v in (ts[i], *ys[i])) + "</tr>" for i in picks
        )
        return (
            f"<div><b>Solution</b> of {html.escape(self.system_name)} {badge}<br>"
            f"solver <code>{html.escape(self.solver)}</code>, method "
            f"<code>{html.escape(self.method)}</code>; {stats['steps']} steps "
            f"({stats['accepted']} accepted, {stats['rejected']} rejected), "
            f"{len(ts)} saved points<br>{html.escape(self.message)}"
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
        )
