"""How a batch of solves is laid out: one stacked state with shared steps, or each member its own.

`ol.solve_ensemble` integrates a batch in one of two layouts:

- "per-member": `jax.vmap` of the solve; each member takes its own step sizes (the batched loop
  runs until the slowest member is done). Implicit solvers factor one small Jacobian per member.
- "shared": the members stacked into one state of batch × n_states components, as torchdiffeq
  integrates a batch. One step size for all, so the step loop carries no per-member bookkeeping;
  the controller's error norm is the worst member's (`solve.ode.worst_member_norm`), so every
  member is still held to the tolerances. Each step evaluates the field once for the whole batch
  (a vmap of the member field inside the step).

"auto" takes "shared" for explicit solvers on one device: it is never slower there (the vmapped
loop also steps until its slowest member is done, and pays for each member's step control), and
it was 2.2× faster for a gradient through 256 neural-ODE trajectories (BENCHMARKS.md,
bench_torch). It takes "per-member" for implicit solvers, whose Newton iterations would factor the
(batch·n)² Jacobian of the stacked state instead of batch small ones, and for several devices,
where members are split between devices.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from .._errors import InputError
from ..solve import solve
from ..solve.solvers.names import solver_spec
from ..system import System

LAYOUTS = ("auto", "shared", "per-member")


def choose_layout(layout: Any, solver: str, n_devices: int) -> tuple[str, str]:
    """(layout, why) for `layout` given by the user ("auto" decides from the solver and devices)."""
    if layout not in LAYOUTS:
        raise InputError(f"`layout={layout!r}` is not known; give one of {', '.join(LAYOUTS)}.")
    if layout != "auto":
        return layout, "as asked"
    if solver_spec(solver).stiff:
        return "per-member", (f"auto: {solver} is implicit; stacked, its Newton steps would "
                              "factor the whole batch's Jacobian")
    if n_devices > 1:
        return "per-member", f"auto: members split over {n_devices} devices"
    return "shared", "auto: explicit solver on one device; one step size for all members"


def member_params(shared: Any, batch: Any) -> Any:
    if isinstance(batch, Mapping) and not batch:  # nothing varies
        return shared
    if isinstance(shared, Mapping) and isinstance(batch, Mapping):
        return {**shared, **batch}
    return batch


@functools.lru_cache(maxsize=64)
def _stacked_field(f: Any, members: int, n_states: int):
    """The field of `members` stacked states, parameters (shared, batch) (one function per
    (f, sizes): its programs compile once)."""

    def field(t, y, p):
        def member(yi, bi):
            return f(t, yi, member_params(p[0], bi))

        ys = jnp.reshape(y, (members, n_states))
        return jnp.reshape(jax.vmap(member)(ys, p[1]), (-1,))

    field.__name__ = f"{getattr(f, '__name__', 'field')}_stacked_{members}"
    return field


def solve_shared(system: System, y0s: Any, shared: Any, batch: Any, members: int,
                 settings: dict[str, Any]):
    """One solve of the members stacked into one state; a Solution shaped like a vmapped one.

    y0s: (members, n_states); shared: the parameters every member uses; batch: the parameters
    that vary (leading axis `members`), {} when none do.
    """
    n = len(system.states)
    stacked = System(_stacked_field(system.f, members, n),
                     states=tuple(f"{s}_{i}" for i in range(members) for s in system.states),
                     params=(shared, batch),
                     y0=jnp.zeros(members * n), t_span=system.t_span,
                     name=f"{system.name} ×{members}", stiff=system.stiff)
    stacked.error_groups = members
    sol = solve(stacked, y0=jnp.reshape(y0s, (-1,)),
                params=(shared, batch), **settings)
    n_save = sol.ts.shape[0]
    ys = jnp.transpose(jnp.reshape(sol.ys, (n_save, members, n)), (1, 0, 2))

    def each(x):
        return jnp.broadcast_to(x, (members, *jnp.shape(x)))

    return dataclasses.replace(
        sol, ts=each(sol.ts), ys=ys, t_reached=each(sol.t_reached),
        y_reached=jnp.reshape(sol.y_reached, (members, n)), result=each(sol.result),
        num_steps=each(sol.num_steps), num_accepted=each(sol.num_accepted),
        num_rejected=each(sol.num_rejected), states=system.states, system_name=system.name)
