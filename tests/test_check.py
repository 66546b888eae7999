"""check_gradient, inspect_adjoint and the `odelab check` command.

References never come from the code under test: closed-form gradients (exponential decay),
matrix powers of a linear scheme (the heat equation's discrete adjoint), and the known zero
gradient of a loss at its own data.
"""

import json
import math
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

import odelab as ol
from odelab._check import cli_check
from odelab.methods import FiniteDifference

T_END = 4.0
DECAY = ol.gallery.exponential_decay(t_span=(0.0, T_END))
DECAY_PARAMS = {"c": 2.0, "k": 0.5}


def decay_loss(p):
    """c · y(T) with y' = -k y, y(0) = 1: gradient (-c T e^{-kT}, e^{-kT}) in closed form."""
    return p["c"] * ol.solve(DECAY, params={"k": p["k"]}, saveat=11).ys[-1, 0]


def decay_exact_gradient(p):
    e = math.exp(-p["k"] * T_END)
    return {"c": e, "k": -p["c"] * T_END * e}  # flattened order: c, k


def decay_problem():
    """For `odelab check test_check:decay_problem`: a (fun, params) pair."""
    return decay_loss, DECAY_PARAMS


def not_a_problem():
    return 42


@pytest.fixture(scope="module")
def decay_report():
    # two good methods and finite differences with a far too large step, in one report
    return ol.check_gradient(
        decay_loss, DECAY_PARAMS,
        methods=["checkpoint", "backsolve", FiniteDifference(step=0.5, richardson=False)],
        rtols=(1e-4, 1e-6, 1e-8), diagnose=False,
    )


def test_reference_matches_the_closed_form(decay_report):
    exact = decay_exact_gradient(DECAY_PARAMS)
    assert decay_report.names == ["c", "k"]
    np.testing.assert_allclose(decay_report.reference, [exact["c"], exact["k"]], rtol=1e-9)
    assert decay_report.fd_agreement < 1e-6


def test_accurate_methods_are_called_accurate(decay_report):
    exact = np.array(list(decay_exact_gradient(DECAY_PARAMS).values()))
    for name in ("checkpoint", "backsolve"):
        row = decay_report.row(name)
        assert row.verdict == "accurate", row
        np.testing.assert_allclose(row.values, exact, rtol=1e-4)
        # the study's errors shrink with the tolerance
        errors = [p.error for p in row.study]
        assert errors[-1] < 1e-2 * errors[0]
        assert row.order > 0.5


def test_finite_differences_with_a_bad_step_are_inaccurate(decay_report):
    row = decay_report.row("finite-difference")
    assert row.label == "finite-difference(step=0.5, richardson=False)"
    assert row.verdict == "inaccurate"
    assert row.error > 1e-3
    assert any("does not shrink as the tolerance tightens" in n for n in row.notes)
    assert decay_report.overall == "inaccurate" and not decay_report.ok
    assert decay_report.recommendation.method in ("checkpoint", "backsolve")
    assert decay_report.recommendation.verified


def test_report_renders_as_text_html_and_json(decay_report):
    text = str(decay_report)
    assert "INACCURATE" in text and "finite-difference(step=0.5" in text
    page = decay_report._repr_html_()
    assert "#1a7f37" in page and "#bc4c00" in page  # green and orange badges
    data = json.loads(decay_report.to_json())
    assert data["overall"] == "inaccurate"
    assert [m["verdict"] for m in data["methods"]] == ["accurate", "accurate", "inaccurate"]
    assert "GradientReport" in repr(decay_report)


def test_a_single_direction_is_checked_with_jvps():
    v = {"c": 0.6, "k": -0.8}
    report = ol.check_gradient(decay_loss, DECAY_PARAMS, methods=["forward"], direction=v,
                               diagnose=False)
    exact = decay_exact_gradient(DECAY_PARAMS)
    expected = 0.6 * exact["c"] - 0.8 * exact["k"]
    assert report.names == ["direction"]
    np.testing.assert_allclose(report.reference, [expected], rtol=1e-9)
    assert report.row("forward").verdict == "accurate"
    assert report.fd_agreement < 1e-6


# --------------------------------------------------------------------------------------------
# broken setups on hard problems, with the diagnosis that explains them
# --------------------------------------------------------------------------------------------
LORENZ = ol.gallery.lorenz(t_span=(0.0, 10.0))


def lorenz_final(p):
    """Sum of the state at t = 10 only: backsolve must re-integrate 10 time units backward."""
    return jnp.sum(ol.solve(LORENZ, params=p, saveat=2).ys[-1])


@pytest.mark.slow
def test_backsolve_on_a_long_dissipative_chaotic_horizon_is_not_accurate():
    report = ol.check_gradient(lorenz_final, dict(LORENZ.params), methods=["backsolve"],
                               rtols=(1e-6, 1e-8))
    row = report.row("backsolve")
    assert row.verdict in ("inaccurate", "unstable", "failed")
    (solve,) = report.solves
    # Lorenz contracts volume at rate σ + 1 + β ≈ 13.7: run backward, errors explode
    assert solve.backward_unstable and solve.backward_growth > 1e10
    assert any(line.startswith("Backward in time the flow is unstable") and "backsolve" in line
               for line in report.diagnosis)


# --------------------------------------------------------------------------------------------
# adjoint inspection: explicit Euler for the heat equation
# --------------------------------------------------------------------------------------------
N_X, N_T, DT = 12, 60, 0.002
LAPLACIAN = (np.diag(-2.0 * np.ones(N_X)) + np.diag(np.ones(N_X - 1), 1)
             + np.diag(np.ones(N_X - 1), -1)) * (N_X + 1) ** 2
LAPLACIAN[0, 1] = 2.0 * (N_X + 1) ** 2  # a Neumann end makes the operator non-symmetric
U0 = np.sin(np.linspace(0.3, 2.8, N_X))
TARGET = np.linspace(0.0, 0.2, N_X)


def heat_step(u, k):
    return u + DT * 0.1 * (jnp.asarray(LAPLACIAN) @ u)


def heat_loss(us):
    return jnp.sum((us[-1] - TARGET) ** 2)


def hand_adjoint(us, bug_at=None, transpose=True):
    op = LAPLACIAN.T if transpose else LAPLACIAN
    lam = [None] * (N_T + 1)
    lam[N_T] = 2.0 * (np.asarray(us[-1]) - TARGET)
    for k in range(N_T - 1, -1, -1):
        factor = 0.5 if k == bug_at else 1.0  # the planted bug: half the diffusion term
        lam[k] = lam[k + 1] + factor * DT * 0.1 * (op @ lam[k + 1])
    return np.stack(lam)


def test_inspection_agrees_with_a_correct_adjoint_and_matrix_powers():
    report = ol.inspect_adjoint(heat_step, U0, N_T, heat_loss, hand_adjoint)
    assert report.ok and report.first_divergence is None
    # independent check: λ0 = ((I + dt·0.1·L)ᵀ)^N λN
    step_matrix = np.eye(N_X) + DT * 0.1 * LAPLACIAN
    u_end = np.linalg.matrix_power(step_matrix, N_T) @ U0
    lam0 = np.linalg.matrix_power(step_matrix.T, N_T) @ (2.0 * (u_end - TARGET))
    np.testing.assert_allclose(report.autodiff[0], lam0, rtol=1e-10)
    assert "agrees" in str(report).lower()


def test_inspection_finds_the_planted_bug_at_its_step():
    report = ol.inspect_adjoint(heat_step, U0, N_T, heat_loss,
                                lambda us: hand_adjoint(us, bug_at=37))
    assert report.first_divergence == 37
    assert np.all(report.errors[38:] <= report.rtol) and report.errors[37] > 1e-3
    assert "step 37" in report.summary()
    assert "#cf222e" in report._repr_html_()
    assert report.to_dict()["first_divergence"] == 37


def test_inspection_finds_a_missing_transpose_at_the_first_backward_step():
    report = ol.inspect_adjoint(heat_step, U0, N_T, heat_loss,
                                lambda us: hand_adjoint(us, transpose=False))
    assert report.first_divergence == N_T - 1


def test_inspection_rejects_a_wrongly_shaped_adjoint():
    with pytest.raises(ol.InputError, match="n_steps \\+ 1"):
        ol.inspect_adjoint(heat_step, U0, N_T, heat_loss, np.zeros((N_T, N_X)))


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------
def test_cli_exit_status_and_json(capsys):
    target = f"{__name__}:decay_problem"
    assert cli_check([target, "--methods", "checkpoint", "--no-diagnose"]) == 0
    assert "ACCURATE" in capsys.readouterr().out
    # an accuracy no solve can reach: not accurate, exit 1, and the JSON says why
    code = cli_check([target, "--methods", "checkpoint", "--no-diagnose", "--json",
                      "--accuracy", "1e-15"])
    assert code == 1
    data = json.loads(capsys.readouterr().out)
    assert data["overall"] == "inaccurate" and data["ok"] is False
    # the loss named directly, with its parameters
    code = cli_check([f"{__name__}:decay_loss", "--params", f"{__name__}:DECAY_PARAMS",
                      "--methods", "checkpoint", "--no-diagnose"])
    assert code == 0


@pytest.mark.parametrize("argv", [
    [],
    ["no_colon_here"],
    ["no_such_module_xyz:f"],
    [f"{__name__}:missing_name"],
    [f"{__name__}:not_a_problem"],
    [f"{__name__}:decay_problem", "--methods", "checkpointt"],
])
def test_cli_usage_errors_exit_with_2(argv, capsys):
    assert cli_check(argv) == 2
    assert capsys.readouterr().err


def test_cli_in_a_fresh_process():
    code = ("from odelab._check import cli_check; raise SystemExit(cli_check("
            "['test_check:decay_problem', '--methods', 'checkpoint', '--no-diagnose', "
            "'--accuracy', '1e-15']))")
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root, here] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    out = subprocess.run([sys.executable, "-c", code], cwd=here, capture_output=True, text=True,
                         timeout=600, env=env)
    assert "INACCURATE" in out.stdout, out.stderr
    assert out.returncode == 1


# --------------------------------------------------------------------------------------------
# the tutorial case: a bursting neuron fitted to its own trajectory (true gradient exactly zero)
# --------------------------------------------------------------------------------------------
def test_bursting_neuron_matches_scipy_and_bursts():
    from scipy.integrate import solve_ivp

    from odelab.gallery.bursting import bursting_neuron

    sys_ = bursting_neuron(t_span=(0.0, 60.0))
    assert len(sys_.states) == 13
    sol = ol.solve(sys_, saveat=601, rtol=1e-10, atol=1e-12)
    f = jax_jit_field(sys_)
    ref = solve_ivp(lambda t, y: np.asarray(f(t, y)), (0.0, 60.0), np.asarray(sys_.y0),
                    method="DOP853", rtol=1e-11, atol=1e-12, t_eval=np.asarray(sol.ts))
    np.testing.assert_allclose(np.asarray(sol["V"]), ref.y[0], atol=1e-4)
    v = np.asarray(sol["V"])
    spikes = np.sum((v[1:] > -20.0) & (v[:-1] <= -20.0))
    assert spikes >= 3  # the burst starts within the first 60 ms


def jax_jit_field(system):
    import jax

    return jax.jit(lambda t, y: system.f(t, y, system.params))


@pytest.mark.slow
def test_bursting_check_flags_loose_tolerances_and_recommends_a_fix():
    from odelab.gallery.bursting import voltage_fit_problem

    fun, params = voltage_fit_problem(t_end=60.0, n_save=121)
    report = ol.check_gradient(fun, params, methods=["forward"], rtol=1e-4,
                               rtols=(1e-4, 1e-8, 1e-10), accuracy=1e-6)
    # the true gradient is zero at the data: the reference is tiny against the scale
    assert np.linalg.norm(report.reference) < 1e-8 * report.scale
    assert report.row("forward").verdict == "inaccurate"  # loose forward mode on a stiff model
    assert report.solves[0].stiff
    assert any(line.startswith("Stiffness: stiff") for line in report.diagnosis)
    rec = report.recommendation
    assert rec.verified and rec.rtol <= 1e-8
    # independently of the report: the recommended gradient is spurious below 1e-6 of the scale
    g = ol.gradient(fun, params, method=rec.method, rtol=rec.rtol, atol=rec.rtol * 1e-2)
    spurious = np.linalg.norm(np.array(list(g.values())))
    assert spurious < 1e-6 * report.scale


def test_methods_for_another_kind_of_system_are_left_out_by_default():
    from odelab import _delay_adjoint  # noqa: F401  (registers "delay-adjoint")

    report = ol.check_gradient(decay_loss, DECAY_PARAMS, rtols=(1e-6,), diagnose=False)
    assert "delay-adjoint" not in [r.method for r in report.rows]
    assert {"checkpoint", "interpolating", "forward"} <= {r.method for r in report.rows}
    assert report.ok, report
    asked = ol.check_gradient(decay_loss, DECAY_PARAMS, methods=["delay-adjoint"],
                              rtols=(1e-6,), diagnose=False)
    assert asked.rows[0].verdict == "failed"
    assert "DelaySystem only" in " ".join(asked.rows[0].notes)
