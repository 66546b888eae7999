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
from odelab.cli import cli_check
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
# adjoint inspection with a pytree state and parameters: a linear step, closed-form adjoints
# --------------------------------------------------------------------------------------------
# x = {"u": 2-vector, "v": scalar}, stacked as z = (u0, u1, v); x[k+1] = a·A x[k] + b, and
# L = c·z[N] + ½ r ‖b‖². Then λ[k] = ((a A)ᵀ)^(N-k) c, dL/db = r b + Σ_{k<N} λ[k+1] and
# dL/da = Σ_{k<N} λ[k+1]·(A z[k]), with z[k] = (a A)^k z0 + Σ_{j<k} (a A)^j b.
A_LIN = np.array([[0.9, 0.2, -0.1], [-0.3, 0.8, 0.05], [0.1, 0.0, 0.7]])
C_LIN, R_LIN, N_LIN = np.array([1.0, -2.0, 0.5]), 0.3, 9
Z0_LIN = {"u": np.array([1.0, 0.5]), "v": np.array(-0.4)}
P_LIN = {"a": 1.1, "b": np.array([0.2, -0.1, 0.3])}


def linear_step(x, k, p):
    z = p["a"] * (jnp.asarray(A_LIN) @ jnp.concatenate([x["u"], x["v"][None]])) + p["b"]
    return {"u": z[:2], "v": z[2]}


def linear_loss(xs, p):
    return (jnp.dot(jnp.asarray(C_LIN), jnp.concatenate([xs["u"][-1], xs["v"][-1:]]))
            + 0.5 * R_LIN * jnp.sum(p["b"] ** 2))


def linear_closed_form():
    """(λ as the pytree of stacked leaves, dL/dparams) from matrix powers, without autodiff."""
    b, m = P_LIN["b"], P_LIN["a"] * A_LIN
    lams = np.stack([np.linalg.matrix_power(m.T, N_LIN - k) @ C_LIN for k in range(N_LIN + 1)])
    z0 = np.concatenate([Z0_LIN["u"], Z0_LIN["v"][None]])
    zs = [np.linalg.matrix_power(m, k) @ z0
          + sum((np.linalg.matrix_power(m, j) @ b for j in range(k)), np.zeros(3))
          for k in range(N_LIN + 1)]
    grad = {"a": sum(lams[k + 1] @ (A_LIN @ zs[k]) for k in range(N_LIN)),
            "b": R_LIN * b + lams[1:].sum(axis=0)}
    return {"u": lams[:, :2], "v": lams[:, 2]}, grad


def test_a_pytree_state_is_inspected_against_matrix_powers():
    # the reproduction: a dict state raised a raw TypeError (Cannot concatenate arrays)
    lam, _ = linear_closed_form()
    step = lambda x, k: linear_step(x, k, P_LIN)
    loss = lambda xs: linear_loss(xs, P_LIN)
    report = ol.inspect_adjoint(step, Z0_LIN, N_LIN, loss, lam)
    assert report.ok, report.summary()
    np.testing.assert_allclose(report.autodiff["u"], lam["u"], rtol=1e-12)
    np.testing.assert_allclose(report.autodiff["v"], lam["v"], rtol=1e-12)
    assert report.param_gradient is None and report.param_errors == {}

    wrong = {"u": lam["u"].copy(), "v": lam["v"].copy()}
    wrong["v"][:5] *= 1.5  # a slip in the backward step from 5 to 4 (it carries on below)
    report = ol.inspect_adjoint(step, Z0_LIN, N_LIN, loss, wrong)
    assert report.first_divergence == 4 and not report.ok
    assert np.all(report.errors[5:] <= report.rtol)
    assert "backward step from 5 to 4" in report.summary()


def test_parameter_adjoints_are_compared_with_the_closed_form():
    lam, grad = linear_closed_form()
    report = ol.inspect_adjoint(linear_step, Z0_LIN, N_LIN, linear_loss, (lam, grad),
                                params=P_LIN)
    assert report.ok, report.summary()
    assert set(report.param_errors) == {"params['a']", "params['b']"}
    np.testing.assert_allclose(report.param_gradient["a"], grad["a"], rtol=1e-12)
    np.testing.assert_allclose(report.param_gradient["b"], grad["b"], rtol=1e-12)
    assert "parameter gradient dL/dparams agrees" in report.summary()

    # a hand-written gradient that forgets the loss's direct term r·b: the states all agree,
    # so the report points at the parameter terms, and names params['b'] only
    forgot = {"a": grad["a"], "b": grad["b"] - R_LIN * P_LIN["b"]}
    report = ol.inspect_adjoint(linear_step, Z0_LIN, N_LIN, linear_loss,
                                lambda xs: (lam, forgot), params=P_LIN)
    assert not report.ok and report.first_divergence is None
    assert report.wrong_params == ["params['b']"]
    assert "wrong for params['b']" in report.summary()
    assert "∂L/∂params" in report.summary() and "params['b']" in str(report)
    assert report.to_dict()["wrong_params"] == ["params['b']"]

    # only the states compared when the user gives no parameter gradient
    report = ol.inspect_adjoint(linear_step, Z0_LIN, N_LIN, linear_loss, (lam, None),
                                params=P_LIN)
    assert report.ok and report.param_errors == {}
    assert "not compared" in report.summary()


@pytest.mark.parametrize("user, phrase", [
    (lambda lam, grad: lam, r"the pair \(λ, dL/dparams\)"),
    (lambda lam, grad: ({"u": lam["u"]}, grad), r"`user_adjoint` has shape \{'u': \(10, 2\)\}"),
    (lambda lam, grad: ({"u": lam["u"], "v": lam["v"][:-1]}, grad), r"\(10,\)"),
    (lambda lam, grad: (lam, {"a": grad["a"]}), r"must be shaped like `params`"),
    (lambda lam, grad: ({"u": "x", "v": lam["v"]}, grad), r"`user_adjoint\['u'\]` is not an"),
])
def test_a_mismatched_user_adjoint_is_named(user, phrase):
    lam, grad = linear_closed_form()
    with pytest.raises(ol.InputError, match=phrase):
        ol.inspect_adjoint(linear_step, Z0_LIN, N_LIN, linear_loss, user(lam, grad),
                           params=P_LIN)


def test_a_step_that_changes_the_state_shape_is_named():
    with pytest.raises(ol.InputError, match=r"`step` returned shapes .* same structure"):
        ol.inspect_adjoint(lambda x, k: {"u": x["u"]}, Z0_LIN, 3, lambda xs: 0.0, None)
    with pytest.raises(ol.InputError, match=r"`x0\['v'\]` is not finite"):
        ol.inspect_adjoint(lambda x, k: x, {"u": Z0_LIN["u"], "v": np.nan}, 3, lambda xs: 0.0,
                           None)


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
    code = ("from odelab.cli import cli_check; raise SystemExit(cli_check("
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

    report = ol.check_gradient(decay_loss, DECAY_PARAMS, rtols=(1e-6,), diagnose=False)
    assert "delay-adjoint" not in [r.method for r in report.rows]
    assert {"checkpoint", "interpolating", "forward"} <= {r.method for r in report.rows}
    assert report.ok, report
    asked = ol.check_gradient(decay_loss, DECAY_PARAMS, methods=["delay-adjoint"],
                              rtols=(1e-6,), diagnose=False)
    assert asked.rows[0].verdict == "failed"
    assert "does not apply to an ordinary System" in " ".join(asked.rows[0].notes)


# --------------------------------------------------------------------------------------------
# the verdict is about the method(s) asked about; finite differences are a cross-check
# --------------------------------------------------------------------------------------------
KINK = 1e-7  # a kink this close to the point: every finite-difference step straddles it


def kinked_loss(p):
    """decay_loss + |k − 0.5 − 1e-7|: AD takes the branch (slope −1 at k = 0.5); central
    differences over any step ≫ 1e-7 see the two branches cancel (slope ≈ 0)."""
    return decay_loss(p) + jnp.abs(p["k"] - DECAY_PARAMS["k"] - KINK)


def test_the_headline_speaks_of_the_method_in_use_when_only_finite_differences_are_wrong():
    updates = []
    report = ol.check_gradient(kinked_loss, DECAY_PARAMS, compare=["finite-difference"],
                               rtols=(1e-4, 1e-6), diagnose=False,
                               on_update=lambda r: updates.append(
                                   (r.headline, list(r.pending), [x.label for x in r.rows],
                                    "running…" in r._repr_html_())))
    exact = decay_exact_gradient(DECAY_PARAMS)
    np.testing.assert_allclose(report.reference, [exact["c"], exact["k"] - 1.0], rtol=1e-9)
    # the method in use ("auto") is right, and the verdict is its own
    assert [r.label for r in report.checked] == ["auto"]
    assert report.ok and report.verdict == "accurate" and report.overall == "accurate"
    assert report.headline.startswith("auto is ACCURATE at rtol 1e-06")
    # finite differences are wrong, as a compared row and as the cross-check, each said apart
    fd = report.row("finite-difference")
    assert fd.role == "compared" and fd.verdict == "inaccurate" and fd.error > 0.1
    assert report.cross_check.status == "disagrees" and report.fd_agreement > 0.1
    text = str(report)
    first_line, cross = text.splitlines()[0], text.splitlines()[2]
    assert "INACCURATE" not in first_line and "ACCURATE" in first_line
    assert cross.startswith("Cross-check: finite differences") and "one of the two" in cross
    data = json.loads(report.to_json())
    assert data["ok"] and data["verdict"] == "accurate"
    assert data["cross_check"]["status"] == "disagrees"
    # streamed: the verdict came first, while the comparison and the cross-check still ran
    first = next(u for u in updates if u[2])
    assert first[2] == ["auto"] and "ACCURATE" in first[0]
    assert "finite-difference" in first[1] and "cross-check" in first[1] and first[3]
    assert updates[-1][1] == [] and updates[-1][2] == ["auto", "finite-difference"]
    assert not updates[-1][3] and report.complete
    s = report.seconds
    assert s["first verdict"] <= s["verdicts"] <= s["total"]


def test_the_reference_gets_the_steps_it_needs_and_the_report_says_so():
    # at rtol 1e-12 the decay solve takes about 120 steps; 20 are enough at the checked 1e-6
    report = ol.check_gradient(decay_loss, DECAY_PARAMS, methods=["checkpoint"],
                               rtols=(1e-4, 1e-6, 1e-10), max_steps=20, diagnose=False)
    exact = decay_exact_gradient(DECAY_PARAMS)
    np.testing.assert_allclose(report.reference, [exact["c"], exact["k"]], rtol=1e-9)
    assert any("ran out of steps at max_steps=20" in n and "max_steps=160" in n
               for n in report.notes)
    assert "max_steps=160" in str(report)
    row = report.row("checkpoint")
    assert row.verdict == "accurate"
    failed = [p for p in row.study if p.error is None]  # the study at 1e-10 keeps the budget
    assert [p.rtol for p in failed] == [1e-10] and "max_steps" in failed[0].message
    assert report.reference_error is not None and report.reference_error < 1e-8
    assert report.cross_check.status == "agrees"


def test_the_scale_is_the_gradient_at_the_point_it_names():
    report = ol.check_gradient(decay_loss, DECAY_PARAMS, methods=["checkpoint"],
                               rtols=(1e-6,), diagnose=False, compare=False)
    # "moved by 1% of their size, alternately up and down": c up, k down (flattened order c, k)
    away = {"c": DECAY_PARAMS["c"] * 1.01, "k": DECAY_PARAMS["k"] * 0.99}
    there = np.linalg.norm(list(decay_exact_gradient(away).values()))
    assert report.scale == pytest.approx(there, rel=1e-9)
    assert "1% of their size, alternately up and down" in report.scale_note


def test_the_diagnosis_never_contradicts_the_rows():
    from odelab.analysis.diagnose import SolveDiagnosis

    d = SolveDiagnosis(system="s", solver="tsit5", t_span=(0.0, 1.0), steps=10, rejected=0,
                       save_points=11, backward_growth=1e12)
    study = lambda *errors: dict(zip((1e-4, 1e-6, 1e-8), errors))  # noqa: E731
    same = d.lines(measured={"backsolve": ("inaccurate", 8.4e-6, study(6e-5, 8.4e-6, 5e-8)),
                             "checkpoint": ("inaccurate", 8.3e-6, study(2e-4, 8.3e-6, 5e-8))})
    line = next(x for x in same if x.startswith("Backward in time"))
    assert "does not show" in line and "cannot be trusted" not in line
    worse = d.lines(measured={"backsolve": ("inaccurate", 8.4e-6, study(3e8, 8.4e-6, 5e-8)),
                              "checkpoint": ("inaccurate", 8.3e-6, study(2e-4, 8.3e-6, 5e-8))})
    line = next(x for x in worse if x.startswith("Backward in time"))
    assert "it shows: at rtol 0.0001 backsolve gives error 3e+08" in line
    alone = d.lines(measured={"checkpoint": ("accurate", 1e-7, study(1e-5, 1e-7, 1e-9))})
    assert "not checked" in next(x for x in alone if x.startswith("Backward in time"))


# --------------------------------------------------------------------------------------------
# the explorer's reference gradient, against scipy with its own sensitivity equations
# --------------------------------------------------------------------------------------------
LV_VALUES = dict(alpha=1.5, beta=1.0, gamma=3.0, delta=1.0)


def scipy_lv_gradient(p, y0=(1.0, 1.0), t1=10.0):
    """∇ of x(T)² + y(T)² (the explorer's default loss) by the forward sensitivity equations
    S' = (∂f/∂y) S + ∂f/∂p, integrated with the state by scipy's DOP853 at rtol 1e-13."""
    from scipy.integrate import solve_ivp

    a, b, g, d = p["alpha"], p["beta"], p["gamma"], p["delta"]

    def rhs(t, u):
        x, y = u[:2]
        s = u[2:].reshape(2, 4)
        jac = np.array([[a - b * y, -b * x], [d * y, d * x - g]])
        f_p = np.array([[x, -x * y, 0.0, 0.0], [0.0, 0.0, -y, x * y]])
        return np.concatenate([[a * x - b * x * y, d * x * y - g * y], (jac @ s + f_p).ravel()])

    out = solve_ivp(rhs, (0.0, t1), np.concatenate([y0, np.zeros(8)]), method="DOP853",
                    rtol=1e-13, atol=1e-13)
    u = out.y[:, -1]
    return dict(zip(("alpha", "beta", "gamma", "delta"), 2 * u[:2] @ u[2:].reshape(2, 4)))


@pytest.mark.parametrize("reference", ["auto", "finite-difference"])
def test_the_explorers_reference_gradient_agrees_with_scipy(reference):
    from odelab.ui.compute import Engine, Settings

    engine = Engine(ol.Objective(ol.gallery.lotka_volterra()))
    s = Settings(values=tuple(LV_VALUES.items()), y0=(1.0, 1.0), t0=0.0, t1=10.0, n_save=41,
                 solver="tsit5", method="backsolve", rtol=1e-6, atol=1e-8, reference=reference)
    ref = engine.reference_gradient(s).value
    exact = scipy_lv_gradient(LV_VALUES)
    want = np.array([exact[n] for n in ref.names])
    assert sorted(ref.names) == sorted(LV_VALUES)
    np.testing.assert_allclose(ref.gradient, want, rtol=1e-7)
    # its own error estimate is small and honest
    assert np.all(ref.error < 1e-6 * np.abs(want))
    assert np.all(np.abs(ref.gradient - want) <= 10 * ref.error + 1e-8 * np.abs(want))
    assert ("cross-check" in ref.label) == (reference == "finite-difference")
    # the chosen method (backsolve at rtol 1e-6) is shown against it, errors near rtol
    g = engine.gradient(s).value
    g.compare_with(ref)
    assert g.reference_label == ref.label and np.max(g.relative_error) < 1e-4
