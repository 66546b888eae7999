"""Planned memory: what a gradient method's program will hold for a given solve, before it runs.

`planned_memory(method, problem)` is the one estimate: `method="auto"` fits its choice to the
memory budget with it, the capability table (`ol.methods(system=...)`) and the explorer's method
menu show it. Each method gives its own formula (`GradientMethod.planned_bytes`) in the terms of
`MemoryProblem`: state size, parameter count, step budget, save points, solver stages.

The formulas were fitted to XLA's compiled memory analysis (temporary plus output bytes of the
gradient program; tests/test_memory_budget.py checks them against it) and err on the high side,
so that a plan that fits its estimate fits the budget.

    >>> problem = MemoryProblem.of(ol.gallery.lorenz(), max_steps=100_000)
    >>> size_text(planned_memory(ol.methods.Checkpoint(), problem))
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import numpy as np

from .._inputs import float_dtype, size_text
from .defaults import DEFAULT_MAX_STEPS, DEFAULT_SAVE_POINTS
from .gradient_method import GradientMethod, method_object, wants_reverse_over_forward
from .solvers import solver_spec


@dataclasses.dataclass(frozen=True)
class MemoryProblem:
    """The sizes a solve's derivative memory depends on.

    state_size: numbers in the state; n_params: differentiated parameters (float leaves);
    max_steps: the step budget (checkpoint and interpolant buffers are sized by it); n_save:
    save points; stages: the solver's stages; itemsize: bytes per number.
    """

    state_size: int
    n_params: int
    max_steps: int
    n_save: int = 201
    stages: int = 7
    itemsize: int = 8

    @classmethod
    def of(cls, system: Any, *, params: Any = None, max_steps: int | None = None,
           n_save: int | None = None, solver: str = "tsit5") -> MemoryProblem:
        """The problem of solving `system` (its own y0 and params unless given)."""
        params = system.params if params is None else params
        return cls(
            state_size=len(system.states),
            n_params=count_floats(params),
            max_steps=max_steps or DEFAULT_MAX_STEPS,
            n_save=n_save or DEFAULT_SAVE_POINTS,
            stages=solver_stages(solver),
            itemsize=np.dtype(float_dtype()).itemsize,
        )

    @property
    def solve_bytes(self) -> float:
        """The plain solve's working set: the saved points and a step's stages."""
        item = self.itemsize
        return (2 * self.n_save * (self.state_size + 1) + (self.stages + 4) * self.state_size
                + 64) * item


def count_floats(tree: Any) -> int:
    """Numbers in the floating-point leaves of `tree` (traced leaves count by their shape)."""
    return sum(int(np.prod(np.shape(x))) for x in jax.tree_util.tree_leaves(tree)
               if hasattr(x, "dtype") and np.issubdtype(np.dtype(x.dtype), np.inexact))


@functools.cache
def solver_stages(solver: str) -> int:
    """The number of stages of `solver` (its vector-field evaluations per step)."""
    from .ode import stages

    return max(1, stages(solver_spec(solver).make()))


def checkpoint_bytes(problem: Any, checkpoints: int) -> float:
    """What one checkpoint holds: the solver's carry (state, its first stage, times, step size,
    controller and counters). With a checkpoint for every step the steps are simply stored;
    with fewer, the binomial schedule keeps more per checkpoint (measured: ~(2n+4) against
    ~(2.6n+17) numbers for a state of n)."""
    n = problem.state_size
    every_step = checkpoints >= problem.max_steps
    return ((2 * n + 4) if every_step else (3 * n + 18)) * problem.itemsize


def checkpointed_bytes(problem: Any, checkpoints: int) -> float:
    """Planned memory of a gradient through `checkpoints` checkpoints: the solve's own, the
    program's fixed working set, one step's stage cotangents, the parameters' cotangent and
    the checkpoints."""
    k = min(checkpoints, problem.max_steps)
    return _reverse_fixed_bytes(problem) + k * checkpoint_bytes(problem, k)


def _reverse_fixed_bytes(problem: Any) -> float:
    n, item = problem.state_size, problem.itemsize
    return (problem.solve_bytes + REVERSE_WORKING_NUMBERS * item
            + 2 * (problem.stages + 4) * n * item + 3 * problem.n_params * item)


REVERSE_WORKING_NUMBERS = 768  # a reverse-mode solve's fixed scratch, measured on small systems


def checkpoints_within(problem: Any, budget: float) -> int:
    """The most checkpoints whose planned memory fits `budget` (0 when not even 2 fit)."""
    if checkpointed_bytes(problem, problem.max_steps) <= budget:
        return problem.max_steps
    fixed = _reverse_fixed_bytes(problem)
    k = int((budget - fixed) // checkpoint_bytes(problem, 0))
    return min(k, problem.max_steps - 1) if k >= 2 else 0


def recomputation_sweeps(checkpoints: int, steps: int) -> int:
    """Forward sweeps the binomial schedule (Griewank's revolve) makes over `steps` steps with
    `checkpoints` checkpoints: the least r with C(checkpoints + r, r) ≥ steps."""
    r = 1
    while math.comb(checkpoints + r, r) < steps:
        r += 1
    return r


def fewest_checkpoints(steps: int, sweeps: int) -> int:
    """The fewest checkpoints (at least 2) with which the binomial schedule covers `steps`
    steps in at most `sweeps` forward sweeps."""
    k = 2
    while math.comb(k + sweeps, sweeps) < steps:
        k *= 2
    lo, hi = k // 2, k  # the schedule covers more steps the more checkpoints: bisect
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if math.comb(mid + sweeps, sweeps) < steps else (lo, mid)
    return max(2, hi)


def planned_memory(method: Any, problem: MemoryProblem, route: tuple | None = None) -> float:
    """Bytes `method` (a name or object) is planned to hold for a gradient of `problem`'s solve
    (inf when it does not say). `route`: the derivative route in force, for second order."""
    method = method_object(method)
    if not isinstance(method, GradientMethod):
        raise ValueError("planned_memory needs a gradient method, not 'auto'")
    planned = method.planned_bytes(with_route(problem, route))
    return math.inf if planned is None else float(planned)


def with_route(problem: MemoryProblem, route: tuple | None) -> MemoryProblem:
    """`problem` as the solves see it under `route`: reverse over forward sensitivities
    integrates the state together with its sensitivity (twice the state)."""
    if wants_reverse_over_forward(route):
        return dataclasses.replace(problem, state_size=2 * problem.state_size)
    return problem


def planned_text(method: Any, problem: MemoryProblem) -> str:
    """The planned memory in words ("1.2 MB"), or "n/a"."""
    planned = planned_memory(method, problem)
    return "n/a" if math.isinf(planned) else size_text(planned)
