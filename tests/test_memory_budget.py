"""Memory budgets: `method="auto"` plans within them, checked against XLA's compiled memory.

The problem: four decoupled exponential decays y_i' = -k_i y_i over t in [0, 1] with 2000 fixed
tsit5 steps, loss = Σ y_i(1)². Closed form: ∂loss/∂k_i = -2 y0_i² e^{-2 k_i}. Four parameters
take the reverse route, whose default (`checkpoint`, one checkpoint per step) holds a few hundred
kB — over the small budgets given here.
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import odelab as ol
from odelab import InputError
from odelab._inputs import size_text
from odelab.solve import set_session_defaults
from odelab.solve.memory import MemoryProblem, planned_memory

STEPS = 2000
K = np.array([0.5, 1.0, 1.5, 2.0])
Y0 = np.array([1.0, 2.0, 0.5, 1.5])
# estimates err on the high side: the compiled program holds between this fraction of the
# estimate and the estimate itself
ESTIMATE_FACTOR = 3.0


@pytest.fixture(scope="module")
def decay():
    return ol.System(lambda t, y, p: -p["k"] * y, states=("a", "b", "c", "d"),
                     params={"k": K}, y0=Y0, t_span=(0.0, 1.0), name="decays")


def make_loss(system, seen=None, **solve_kw):
    def loss(p):
        sol = ol.solve(system, params=p, saveat=2, dt=1.0 / STEPS, solver="tsit5",
                       max_steps=STEPS + 10, **solve_kw)
        if seen is not None:
            seen.append(sol.method_reason)
        return jnp.sum(sol.ys[-1] ** 2)

    return loss


def compiled(fn, params) -> tuple[float, object]:
    """(temporary + output bytes of the compiled program, its value at params): one compile."""
    program = jax.jit(fn).lower(params).compile()
    stats = program.memory_analysis()
    return float(stats.temp_size_in_bytes + stats.output_size_in_bytes), program(params)


def traced_reason(fn, params, seen) -> str:
    """The method reason of the solve inside `fn`, from tracing it (nothing compiled)."""
    jax.make_jaxpr(fn)(params)
    return seen[-1]


def closed_form():
    return -2.0 * Y0**2 * np.exp(-2.0 * K)


def problem_of(system):
    return MemoryProblem.of(system, max_steps=STEPS + 10, n_save=2)


def test_a_small_budget_gets_a_checkpointed_plan_that_fits_it(decay):
    params = {"k": jnp.asarray(K)}
    budget = 40_000.0
    seen: list[str] = []
    loss = make_loss(decay, seen)
    budgeted = lambda p: ol.gradient(loss, p, memory_budget=budget)
    unbudgeted = lambda p: ol.gradient(make_loss(decay), p)

    measured, g = compiled(budgeted, params)
    reason = seen[-1]
    match = re.search(r"took checkpoint with (\d+) checkpoints", reason)
    assert match, reason
    k = int(match.group(1))
    assert 2 <= k < STEPS
    # the default plan did not fit: its compiled memory is over the budget
    measured_full, g_full = compiled(unbudgeted, params)
    assert measured_full > budget
    assert measured <= budget
    planned = planned_memory(ol.methods.Checkpoint(k), problem_of(decay))
    assert planned <= budget
    assert planned / ESTIMATE_FACTOR <= measured <= planned

    np.testing.assert_allclose(g["k"], g_full["k"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(g["k"], closed_form(), rtol=1e-9)


def test_an_ample_budget_changes_nothing(decay):
    params = {"k": jnp.asarray(K)}
    seen: list[str] = []
    fn = lambda p: ol.gradient(make_loss(decay, seen), p, memory_budget="1GB")
    assert traced_reason(fn, params, seen) == ""  # checkpoint, one checkpoint per step
    assert traced_reason(lambda p: ol.gradient(make_loss(decay, seen), p), params, seen) == ""


@pytest.mark.parametrize("method", [ol.methods.Checkpoint(16), "backsolve"])
def test_planned_memory_brackets_the_compiled_memory(decay, method):
    params = {"k": jnp.asarray(K)}
    measured, _ = compiled(lambda p: ol.gradient(make_loss(decay), p, method), params)
    planned = planned_memory(method, problem_of(decay))
    assert planned / ESTIMATE_FACTOR <= measured <= planned


def test_a_budget_no_checkpoint_plan_fits_takes_backsolve_and_says_so(decay):
    params = {"k": jnp.asarray(K)}
    problem = problem_of(decay)
    budget = planned_memory("backsolve", problem)
    assert budget < planned_memory(ol.methods.Checkpoint(2), problem)
    seen: list[str] = []
    _, g = compiled(lambda p: ol.gradient(make_loss(decay, seen), p, memory_budget=budget),
                    params)
    assert "took backsolve" in seen[-1] and "approximate" in seen[-1]
    np.testing.assert_allclose(g["k"], closed_form(), rtol=1e-6)


def test_the_budget_comes_from_the_session_and_the_environment(decay, monkeypatch):
    params = {"k": jnp.asarray(K)}
    seen: list[str] = []
    # a new function each time: jax caches the trace of the same one
    plain = lambda: lambda p: ol.gradient(make_loss(decay, seen), p)
    monkeypatch.setenv("ODELAB_MEMORY_BUDGET", "40kB")
    assert "memory budget of 40 kB" in traced_reason(plain(), params, seen)
    monkeypatch.delenv("ODELAB_MEMORY_BUDGET")
    try:
        set_session_defaults(memory_budget=50_000)
        assert "memory budget of 48.8 kB" in traced_reason(plain(), params, seen)
        # the call's own budget wins
        own = lambda p: ol.gradient(make_loss(decay, seen), p, memory_budget="45kB")
        assert "memory budget of 45 kB" in traced_reason(own, params, seen)
    finally:
        set_session_defaults()


def test_the_default_budget_is_half_the_free_memory_within_the_limit(monkeypatch):
    from odelab import _inputs

    monkeypatch.delenv("ODELAB_MEMORY_BUDGET", raising=False)
    free = _inputs.free_memory()
    assert free is not None and free > 0
    expected = min(_inputs.BUDGET_FRACTION * free, _inputs.memory_limit())
    assert math.isclose(_inputs.memory_budget(), expected, rel_tol=0.2)
    monkeypatch.setenv("ODELAB_MEMORY_LIMIT", "1MB")
    assert _inputs.memory_budget("1GB") == 2**20


@pytest.mark.parametrize("bad, words", [
    (-1, "must be a positive size"),
    (0, "must be a positive size"),
    (float("nan"), "must be a positive size"),
    (True, "must be a number of bytes"),
    ([1], "must be a number of bytes"),
    ("lots", "is not a size"),
])
def test_bad_budgets_are_refused_naming_the_argument(decay, bad, words):
    with pytest.raises(InputError, match=re.escape("memory_budget") + ".*" + words):
        ol.gradient(make_loss(decay), {"k": K}, memory_budget=bad)
    with pytest.raises(InputError, match="memory_budget"):
        ol.solve(decay, memory_budget=bad)
    with pytest.raises(InputError, match="memory_budget"):
        set_session_defaults(memory_budget=bad)


def test_a_bad_budget_in_the_environment_is_refused_naming_it(decay, monkeypatch):
    monkeypatch.setenv("ODELAB_MEMORY_BUDGET", "-5MB")
    with pytest.raises(InputError, match="ODELAB_MEMORY_BUDGET"):
        ol.solve(decay)


def test_the_capability_table_and_the_explorer_show_planned_memory(decay):
    from odelab.ui.options import explorer_methods, planned_memory_text

    table = ol.methods(system=decay, max_steps=STEPS + 10, saveat=2)
    assert "planned memory" in repr(table)
    records = {r["name"]: r["planned_memory"] for r in table.to_records()}
    problem = problem_of(decay)
    for name in ("checkpoint", "backsolve"):
        assert records[name] == size_text(planned_memory(name, problem))
    assert "planned memory" not in repr(ol.methods())  # without a system: capabilities only
    text = planned_memory_text(decay, explorer_methods(decay))
    assert "checkpoint" in text and "backsolve" in text and "Auto plans within" in text


def test_when_nothing_fits_auto_takes_the_least_memory_of_bounded_recomputation(decay):
    from odelab.solve.auto import MAX_RECOMPUTATION_SWEEPS
    from odelab.solve.memory import recomputation_sweeps

    seen: list[str] = []
    fn = lambda p: ol.gradient(make_loss(decay, seen), p, memory_budget=1000)
    reason = traced_reason(fn, {"k": jnp.asarray(K)}, seen)
    match = re.search(r"no plan fits it; took checkpoint with (\d+) checkpoints", reason)
    assert match, reason
    k = int(match.group(1))
    assert recomputation_sweeps(k, STEPS + 10) <= MAX_RECOMPUTATION_SWEEPS
    assert recomputation_sweeps(k - 1, STEPS + 10) > MAX_RECOMPUTATION_SWEEPS
