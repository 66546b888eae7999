"""The ODE integrator: a System's solve as one diffrax program per static configuration.

Static (changing it compiles once, then hits JAX's cache): the vector field, the solver, the
gradient method, the number and kind of save points, fixed or adaptive steps, max_steps.
Traced (changing it never compiles): parameter values, y0, t_span, rtol, atol, save times, dt.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._compilations import SOLVE_TRACES
from .._errors import InputError
from .._inputs import check_memory, float_dtype, is_concrete, traced
from .gradient_method import GradientMethod
from .solution import Solution, check_start
from .solvers import solver_spec

KIND = "ode"


@dataclasses.dataclass(frozen=True)
class SolveConfig:
    """Everything about an ODE solve that shapes the compiled program (hashable)."""

    f: Any
    states: tuple[str, ...]
    system_name: str
    solver: str
    method: GradientMethod
    save: str  # "count" | "times" | "dense"
    n_save: int
    fixed_steps: bool
    max_steps: int
    # >1: the state is that many members stacked (`ol.solve_ensemble(layout="shared")`); the
    # step-size controller holds each member's error to the tolerances (worst member's norm)
    error_groups: int = 1
    solver_reason: str = dataclasses.field(default="", compare=False)
    method_reason: str = dataclasses.field(default="", compare=False)

    def __hash__(self) -> int:  # looked up on every solve: computed once
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(tuple(getattr(self, f.name) for f in dataclasses.fields(self)
                                if f.compare))
            object.__setattr__(self, "_hash", cached)
        return cached


def prepare(system: Any, s: Any) -> tuple[SolveConfig, dict[str, Any]]:
    """The static configuration and the traced inputs of a System's solve (`s`: the resolved
    `settings.Settings`)."""
    if s.fixed and is_concrete(s.dt, s.t0, s.t1):
        needed = int(np.ceil((s.t1 - s.t0) / s.dt))
        if needed > s.max_steps:
            raise InputError(
                f"`dt={s.dt:g}` needs {needed} steps over t_span=({s.t0:g}, {s.t1:g}), more "
                f"than max_steps={s.max_steps}. Raise max_steps or use a larger dt."
            )
    check_solution_memory(s, len(system.states))
    config = SolveConfig(
        f=system.f,
        states=system.states,
        system_name=system.name,
        solver=s.spec.name,
        method=s.method,
        save=s.save,
        n_save=s.n_save,
        fixed_steps=s.fixed,
        max_steps=s.max_steps,
        error_groups=getattr(system, "error_groups", 1),
        solver_reason=s.solver_reason,
        method_reason=s.method_reason,
    )
    y0 = s.y0
    inputs = dict(
        y0=y0 if isinstance(y0, jax.core.Tracer) else np.asarray(y0, dtype=s.dtype),
        params=s.params,
        t0=traced(s.t0),
        t1=traced(s.t1),
        rtol=traced(s.rtol),
        atol=traced(s.atol),
        ts=s.ts,
        dt=traced(s.dt if s.fixed else 0.0),
    )
    return config, inputs


def check_solution_memory(s: Any, n_states: int) -> None:
    """Refuse, before compiling, a solve whose saved points or interpolant cannot fit."""
    item = np.dtype(s.dtype).itemsize
    # the saved times and states, held twice while the program hands them over
    stored = 2 * s.n_save * (n_states + 1) * item
    if s.save == "dense":  # the interpolant: each step's stages, start and end state
        stages_ = stages(solver_spec(s.spec.name).make())
        dense = s.max_steps * ((stages_ + 2) * n_states + 1) * item
        check_memory(
            f"`saveat='dense'` keeps the interpolant of up to max_steps={s.max_steps} steps of "
            f"{n_states} states", stored + dense,
            "Lower max_steps, or save at a number of points (saveat=1000) instead of 'dense'.")
        return
    check_saved_points_memory(s.n_save, s.ts, n_states)


def check_saved_points_memory(n_save: int, ts: Any, n_states: int) -> None:
    """Refuse save points that cannot fit: checked before anything is traced or compiled (even
    before `solver='auto'` probes the system)."""
    stored = 2 * n_save * (n_states + 1) * np.dtype(float_dtype()).itemsize
    given = f"`saveat={n_save}` asks for" if ts is None else "`saveat` holds"
    check_memory(
        f"{given} {n_save} save points of {n_states} states", stored,
        "Save fewer points (e.g. saveat=1000), give only the times you need as an array, or use "
        "saveat='dense' and evaluate the solution where you need it (sol.evaluate(t)).")


# --------------------------------------------------------------------------------------------
# the compiled program
# --------------------------------------------------------------------------------------------
def tangent_field(f, prest):
    """The field of the state y and its forward sensitivity s = ∂y/∂(y0, p)·(ẏ0, ṗ) together.

    State (y, s), args (differentiable params, ṗ): s' = (∂f/∂y)s + (∂f/∂p)ṗ, one jvp of f.
    Integrated as one state, the controller's error norm (RMS over every component, each scaled
    by rtol·|value| + atol) bounds the sensitivities' error as well as the state's.
    """

    def augmented(t, z, args):
        (y, s), (p, dp) = z, args
        return jax.jvp(lambda yy, pp: f(t, yy, eqx.combine(pp, prest)), (y, p), (s, dp))

    return augmented


def worst_member_norm(members: int):
    """The controller's error norm for `members` stacked states: the largest of the members' RMS
    norms, so a step shared by all members is accepted only when every member's error is within
    the tolerances (diffrax's default, one RMS over everything, would let one member's error hide
    among the others'). Leaves whose leading axis is the flattened member-major state (the state,
    its sensitivities and adjoints) are split by member; any other leaf (the cotangent of a
    shared parameter in an adjoint solve) counts towards every member.
    """

    def norm(error):
        square, count, rest, rest_count = 0.0, 0, 0.0, 0
        for x in jax.tree_util.tree_leaves(error):
            if jnp.ndim(x) and jnp.shape(x)[0] % members == 0:
                rows = jnp.reshape(x, (members, -1))
                square, count = square + jnp.sum(rows ** 2, axis=1), count + rows.shape[1]
            else:
                rest, rest_count = rest + jnp.sum(jnp.asarray(x) ** 2), rest_count + jnp.size(x)
        return jnp.max(jnp.sqrt((square + rest) / max(count + rest_count, 1)))

    return norm


def run(config: SolveConfig, inputs: dict[str, Any], adjoint: diffrax.AbstractAdjoint,
        tangents: tuple[Any, Any] | None = None):
    """The diffrax solve of `config` on `inputs`, as a Solution.

    tangents=(ty0, tp): integrate the forward sensitivities along (ty0, tp) with the state, the
    error norm covering both (`tangent_field`); returns (Solution, (sensitivities at the save
    times, at the end)).
    """
    spec = solver_spec(config.solver)
    solver = spec.make()
    if config.fixed_steps:
        controller = diffrax.ConstantStepSize()
        dt0 = inputs["dt"]
    else:
        norm = worst_member_norm(config.error_groups) if config.error_groups > 1 else None
        controller = diffrax.PIDController(rtol=inputs["rtol"], atol=inputs["atol"],
                                           **({} if norm is None else {"norm": norm}))
        dt0 = None
    # The final state (where a failed solve stopped) comes from a second save; diffrax's
    # BacksolveAdjoint takes only one, so there the last finite saved point stands in for it.
    one_save = isinstance(adjoint, diffrax.BacksolveAdjoint)
    if one_save:
        saveat = diffrax.SaveAt(ts=inputs["ts"], dense=config.save == "dense")
    else:
        subs = [diffrax.SubSaveAt(ts=inputs["ts"]), diffrax.SubSaveAt(t1=True)]
        saveat = diffrax.SaveAt(subs=subs, dense=config.save == "dense")
    field, y0, args = (lambda t, y, p: config.f(t, y, p)), inputs["y0"], inputs["params"]
    if tangents is not None:
        pdiff, prest = eqx.partition(args, eqx.is_inexact_array)
        field, y0, args = tangent_field(config.f, prest), (y0, tangents[0]), (pdiff, tangents[1])
    out = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        solver,
        t0=inputs["t0"],
        t1=inputs["t1"],
        dt0=dt0,
        y0=y0,
        args=args,
        saveat=saveat,
        stepsize_controller=controller,
        adjoint=adjoint,
        max_steps=config.max_steps,
        throw=False,
    )
    if one_save:
        ts, ys = out.ts, out.ys
        last = jnp.max(jnp.where(jnp.all(jnp.isfinite(ys), axis=1), jnp.arange(ts.shape[0]), 0))
        t_end, y_end = ts[last][None], ys[last][None]
    else:
        (ts, t_end), (ys, y_end) = out.ts, out.ys
    if tangents is not None:
        (ys, s_ys), (y_end, s_end) = ys, y_end
    dense = None
    if config.save == "dense":
        dense = eqx.tree_at(lambda s: (s.ts, s.ys), out, (None, None), is_leaf=lambda x: x is None)
    sol = Solution(
        ts=ts,
        ys=ys,
        t_reached=t_end[-1],
        y_reached=y_end[-1],
        result=out.result._value,
        num_steps=out.stats["num_steps"],
        num_accepted=out.stats["num_accepted_steps"],
        num_rejected=out.stats["num_rejected_steps"],
        dense=dense,
        states=config.states,
        system_name=config.system_name,
        solver=config.solver,
        method=config.method.name,
        max_steps=config.max_steps,
        stages=stages(solver),
        solver_reason=config.solver_reason,
        method_reason=config.method_reason,
    )
    return sol if tangents is None else (sol, (s_ys, s_end[-1]))


def stages(solver: diffrax.AbstractSolver) -> int:
    """How many vector-field evaluations one step of `solver` takes (for cost reports)."""
    tableau = getattr(solver, "tableau", None)
    c = getattr(tableau, "c", None)
    return len(c) + 1 if c is not None else getattr(solver, "stages", 1)


def _program(config: SolveConfig, inputs: dict[str, Any]) -> Solution:
    SOLVE_TRACES.bump()
    if inputs["ts"] is None:  # evenly spaced save points, computed inside the program
        inputs = {**inputs, "ts": jnp.linspace(inputs["t0"], inputs["t1"], config.n_save)}
    size = int(np.prod(np.shape(inputs["y0"])))
    extra = {"config": config} if config.method.uses_config else {}
    sol = config.method.integrate(functools.partial(run, config), inputs,
                                  max_steps=config.max_steps, state_size=size, **extra)
    return check_start(sol, config.f, inputs["t0"], inputs["y0"], inputs["params"])


_array_program = jax.jit(_program, static_argnums=0)
_filtered_program = eqx.filter_jit(_program)


def integrate(config: SolveConfig, inputs: dict[str, Any]) -> Solution:
    """The solve program for `config`, compiled once (JAX caches it) and called with `inputs`.

    When every input is an array (parameters as numbers or arrays: the usual case) this is a
    plain `jax.jit` with the configuration static, whose dispatch costs microseconds; parameters
    holding other objects (an equinox network's activation function, say) go through equinox's
    filter_jit, which sorts arrays from static values on every call.
    """
    if all(isinstance(x, (np.ndarray, jax.Array)) for x in jax.tree_util.tree_leaves(inputs)):
        return _array_program(config, inputs)
    return _filtered_program(config, inputs)
