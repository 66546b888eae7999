"""The explorer, headless: drive every control through its parameter or widget and check what the
Bokeh sources hold against references computed without the explorer (scipy at tight tolerance,
closed forms, finite differences).
"""

import json
import math
import threading

import jax.numpy as jnp
import numpy as np
import panel as pn
import pytest
from bokeh.events import Tap
from scipy.integrate import solve_ivp

import odelab as ol
from odelab.ui import Explorer, Objective, explore
from odelab.ui.options import method_options, solver_groups
from odelab.ui.phase import classify, depends_on_time, find_equilibria, zero_contour

N_SAVE = 41
LV = dict(alpha=1.5, beta=1.0, gamma=3.0, delta=1.0)


def lv_rhs(p):
    def f(t, y):
        x, z = y
        return [p["alpha"] * x - p["beta"] * x * z, p["delta"] * x * z - p["gamma"] * z]

    return f


def scipy_lv(p, y0=(1.0, 1.0), t1=10.0, n=N_SAVE):
    ts = np.linspace(0.0, t1, n)
    out = solve_ivp(lv_rhs(p), (0.0, t1), y0, t_eval=ts, rtol=1e-12, atol=1e-12, method="DOP853")
    return ts, out.y.T


def scipy_loss(p):
    """The explorer's default loss: sum of squares of the final state."""
    return float(np.sum(scipy_lv(p)[1][-1] ** 2))


@pytest.fixture(scope="module")
def ex():
    explorer = explore(ol.gallery.lotka_volterra(), n_save=N_SAVE, solver="tsit5")
    explorer.__panel__().get_root()  # builds the widgets and runs the first computation
    assert explorer.status_level == "success", explorer.status
    return explorer


def trajectory(explorer):
    data = explorer.plots.trajectory.source.data
    return np.asarray(data["t"]), np.stack([np.asarray(data["x"]), np.asarray(data["y"])], axis=1)


def test_first_render_shows_the_solution(ex):
    ts, ys = trajectory(ex)
    sol = ol.solve(ol.gallery.lotka_volterra(), saveat=N_SAVE, solver="tsit5")
    np.testing.assert_allclose(ts, np.asarray(sol.ts))
    np.testing.assert_allclose(ys, np.asarray(sol.ys), rtol=1e-12)
    ref_ts, ref_ys = scipy_lv(LV)
    np.testing.assert_allclose(ys, ref_ys, rtol=1e-3, atol=1e-4)
    assert ex.stats["steps"] > 0 and ex.stats["compilations"] <= ol.compile_count()


def test_slider_release_updates_the_plots(ex):
    slider = ex._widgets["params"]["alpha"]  # log-scale slider: its value is log10(alpha)
    before = trajectory(ex)[1].copy()
    slider._process_events({"value": math.log10(2.0), "value_throttled": math.log10(2.0)})
    assert ex.values["alpha"] == pytest.approx(2.0)
    after = trajectory(ex)[1]
    assert np.max(np.abs(after - before)) > 0.1
    np.testing.assert_allclose(after, scipy_lv({**LV, "alpha": 2.0})[1], rtol=1e-3, atol=1e-4)
    ex.set_value("alpha", 1.5)
    assert slider.value == pytest.approx(math.log10(1.5))  # the slider follows the parameter


def test_hundred_slider_moves_compile_nothing(ex):
    ex.set_value("beta", 0.9)  # warm-up of this path
    before = ol.compile_count()
    for k, v in enumerate(np.linspace(0.6, 1.4, 100)):
        ex.set_value("beta" if k % 2 else "gamma", float(v))
    assert ol.compile_count() == before
    expected = {**LV, **{k: ex.values[k] for k in ("beta", "gamma")}}
    np.testing.assert_allclose(trajectory(ex)[1], scipy_lv(expected)[1], rtol=1e-3, atol=1e-4)
    ex.values = {**LV}


def test_initial_state_time_span_and_tolerances(ex):
    ex.param.update(y0=[2.0, 0.5], t1=5.0, rtol=1e-10, atol=1e-12)
    ts, ys = trajectory(ex)
    assert ts[-1] == pytest.approx(5.0)
    np.testing.assert_allclose(ys, scipy_lv(LV, y0=(2.0, 0.5), t1=5.0)[1], rtol=1e-7, atol=1e-9)
    widget = ex._widgets["y0"][0]
    assert widget.value == 2.0
    widget.value = 1.0  # typing into the input box
    assert ex.y0 == [1.0, 0.5]
    ex.param.update(y0=[1.0, 1.0], t1=10.0, rtol=1e-6, atol=1e-8)


def test_gradient_matches_finite_differences_of_scipy(ex):
    ex.param.update(rtol=1e-10, atol=1e-12)
    data = ex.plots.gradient.source.data
    names = list(data["name"])
    assert sorted(names) == sorted(LV)
    h = 1e-5
    for name, value in zip(names, data["method"]):
        up, down = dict(LV), dict(LV)
        up[name] += h
        down[name] -= h
        fd = (scipy_loss(up) - scipy_loss(down)) / (2 * h)
        assert value == pytest.approx(fd, rel=1e-5), name
    ex.param.update(rtol=1e-6, atol=1e-8)


def test_gradient_view_shows_the_reference_and_relative_errors(ex):
    ex.view = "Gradient"  # the reference is computed for the view in front
    try:
        data = ex.plots.gradient.source.data
        method, ref = np.asarray(data["method"]), np.asarray(data["reference"])
        assert np.all(np.isfinite(ref))
        rel = np.asarray(data["relative_error"])
        np.testing.assert_allclose(rel, np.abs(method - ref) / np.abs(ref), rtol=1e-12)
        assert np.max(rel) < 1e-3  # rtol 1e-6 against a tight reference
        assert list(ex.plots.gradient.errors.data["name"]) == list(data["name"])
    finally:
        ex.view = "Trajectory"


def test_gradient_method_change_recomputes_with_that_method(ex):
    before = np.asarray(ex.plots.gradient.source.data["method"]).copy()
    ex._widgets["method"].value = "forward"
    try:
        assert ex.method == "forward"
        assert ex.status_level == "success", ex.status
        after = np.asarray(ex.plots.gradient.source.data["method"])
        np.testing.assert_allclose(after, before, rtol=1e-4)
    finally:
        ex.method = "auto"


def test_method_menu_marks_methods_that_cannot_serve_the_view(ex):
    hessian = method_options("hessian", ex.method_names)
    labels = {v: k for k, v in hessian.items()}
    for row in ol.methods().rows:
        if row.name not in ex.method_names:
            continue
        if row.capabilities.second_order:
            assert "✗" not in labels[row.name]
        else:
            assert "no second-order route" in labels[row.name]
    ex.view = "Hessian"
    assert ex._widgets["method"].options == hessian
    ex.view = "Trajectory"
    assert all("✗" not in label for label in ex._widgets["method"].options)


def test_solver_menu_groups_explicit_and_stiff():
    from odelab.solve import SOLVERS

    groups = solver_groups()
    explicit = groups["explicit (non-stiff)"]
    stiff = groups["implicit (stiff)"]
    assert "tsit5" in explicit and "kvaerno5" in stiff
    assert all(not SOLVERS[n].stiff for n in explicit) and all(SOLVERS[n].stiff for n in stiff)


def test_a_failed_solve_shows_in_the_status_and_keeps_the_plots(ex):
    before = trajectory(ex)
    ex.t1 = 1e7  # far too long for max_steps: the solve fails
    assert ex.status_level == "danger"
    assert "max_steps" in ex.status
    np.testing.assert_array_equal(trajectory(ex)[1], before[1])
    ex.t1 = 10.0  # the controls still work
    assert ex.status_level == "success"
    np.testing.assert_allclose(trajectory(ex)[1], before[1], rtol=1e-12)


def test_a_stale_result_never_overwrites_a_newer_one(ex):
    release = threading.Event()
    original = ex._compute_main
    calls = []

    def slow_first(s):
        calls.append(s)
        if len(calls) == 1:
            release.wait(30)
        return original(s)

    ex._compute_main = slow_first
    ex.background = True
    try:
        ex.set_value("alpha", 1.1)  # starts computing, blocks
        ex.set_value("alpha", 2.5)  # newer request
        release.set()
        ex.wait()
    finally:
        ex._compute_main = original
        ex.background = False
    assert ex.dropped >= 1
    np.testing.assert_allclose(trajectory(ex)[1], scipy_lv({**LV, "alpha": 2.5})[1], rtol=1e-3,
                               atol=1e-4)
    ex.set_value("alpha", 1.5)


def test_phase_plane_nullclines_and_equilibria_match_closed_forms(ex):
    a, b, c, d = LV["alpha"], LV["beta"], LV["gamma"], LV["delta"]
    nx = ex.plots.phase.nullcline_x.data
    ny = ex.plots.phase.nullcline_y.data
    assert len(nx["x0"]) > 5 and len(ny["x0"]) > 5
    # dx/dt = x (a - b y) = 0 on x = 0 or y = a/b; dy/dt = y (d x - c) = 0 on y = 0 or x = c/d
    for key in ("0", "1"):
        xs, ys = np.asarray(nx["x" + key]), np.asarray(nx["y" + key])
        assert np.all(np.minimum(np.abs(xs), np.abs(ys - a / b)) < 1e-9)
        xs, ys = np.asarray(ny["x" + key]), np.asarray(ny["y" + key])
        assert np.all(np.minimum(np.abs(ys), np.abs(xs - c / d)) < 1e-9)
    eq = ex.plots.phase.equilibria.data
    found = {(round(x, 8), round(y, 8)): k for x, y, k in zip(eq["x"], eq["y"], eq["kind"])}
    assert found.get((c / d, a / b)) == "center"  # eigenvalues ±i sqrt(a c)
    if (0.0, 0.0) in found:
        assert found[(0.0, 0.0)] == "saddle"
    assert len(ex.plots.phase.arrows.data["x0"]) > 100


def test_clicking_the_phase_plane_starts_a_trajectory_there(ex):
    ex.clear_trajectories()
    fig = ex.plots.phase.figure
    fig._trigger_event(Tap(fig, x=2.0, y=0.5))
    extra = ex.plots.phase.extra.data
    assert len(extra["xs"]) == 1
    ref = scipy_lv(LV, y0=(2.0, 0.5))[1]
    np.testing.assert_allclose(extra["xs"][0], ref[:, 0], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(extra["ys"][0], ref[:, 1], rtol=1e-3, atol=1e-4)


def test_states_and_parameters_to_plot(ex):
    ex.states = ["x"]
    assert ex.plots.trajectory.lines["x"].visible and not ex.plots.trajectory.lines["y"].visible
    ex.states = ["x", "y"]
    ex.shown_params = ["alpha", "gamma"]
    assert list(ex.plots.gradient.source.data["name"]) == ["alpha", "gamma"]
    ex.shown_params = list(LV)
    ex.param.update(x_state="y", y_state="x")
    xs = np.asarray(ex.plots.phase.trajectory.data["x"])
    np.testing.assert_allclose(xs, trajectory(ex)[1][:, 1])
    ex.param.update(x_state="x", y_state="y")


def test_stats_report_steps_and_compilations(ex):
    ex.set_value("delta", 1.2)
    stats = ex.stats
    sol = ol.solve(ol.gallery.lotka_volterra(), params={"delta": 1.2}, saveat=N_SAVE,
                   solver="tsit5")
    assert stats["steps"] == sol.stats["steps"]
    assert stats["rejected"] == sol.stats["rejected"]
    assert stats["compilations"] == ol.compile_count()
    assert stats["solve_ms"] > 0
    html = ex._widgets["stats"].object
    assert "rejected steps" in str(html) or callable(html)
    ex.set_value("delta", 1.0)


def test_gradient_field_losses_match_scipy(ex):
    ex.param.update(field_x="alpha", field_y="beta", field_n=3)
    ex.compute_field()
    assert ex.progress == 100, ex.status
    image = ex.plots.field.image.data["image"][0]
    info = ex.system.param_info
    xs = np.geomspace(info["alpha"].lo, info["alpha"].hi, 3)
    ys = np.geomspace(info["beta"].lo, info["beta"].hi, 3)
    for i, beta in enumerate(ys):
        for j, alpha in enumerate(xs):
            loss = scipy_loss({**LV, "alpha": alpha, "beta": beta})
            assert image[i][j] == pytest.approx(math.log10(loss), abs=1e-3)
    assert ex.plots.field.current.data["x"] == [pytest.approx(math.log10(LV["alpha"]))]


def test_hessian_spectrum_of_exponential_decay_matches_closed_form():
    # loss = y(T)^2 = y0^2 exp(-2 k T): d²loss/dk² = 4 T² y0² exp(-2 k T)
    system = ol.gallery.exponential_decay(k=0.5)
    explorer = explore(system, n_save=11, solver="tsit5", compute_gradient=False, rtol=1e-10,
                       atol=1e-12)
    explorer.refresh()
    explorer.compute_spectrum()
    T = system.t_span[1]
    expected = 4 * T**2 * math.exp(-2 * 0.5 * T)
    assert explorer.spectrum is not None, explorer.status
    assert explorer.spectrum.eigenvalues[0] == pytest.approx(expected, rel=1e-6)
    mags = explorer.plots.spectrum.eigenvalues.data["magnitude"]
    assert mags[0] == pytest.approx(expected, rel=1e-6)
    assert list(explorer.plots.spectrum.vectors.data["name"]) == ["k"]
    assert explorer.spectrum.condition_number == 1.0


DECAY_TS = np.linspace(0.0, 4.0, 5)
DECAY_OBSERVED = np.exp(-0.7 * DECAY_TS)[:, None]


def decay_loss(k):
    """0.5 Σ (e^{-k t} - observed)² in closed form."""
    return 0.5 * np.sum((np.exp(-k * DECAY_TS) - DECAY_OBSERVED[:, 0]) ** 2)


@pytest.fixture(scope="module")
def decay():
    objective = Objective(ol.gallery.exponential_decay(k=0.5), data=(DECAY_TS, DECAY_OBSERVED))
    explorer = Explorer(objective, n_save=11, solver="tsit5", rtol=1e-10, atol=1e-12)
    explorer.refresh()
    return explorer


def test_objective_with_data_uses_least_squares(decay):
    assert decay.objective.loss_name == "least squares vs data"
    assert list(decay.plots.trajectory.data_source.data["t"]) == list(DECAY_TS)
    assert decay.stats["loss"] == pytest.approx(decay_loss(0.5), rel=1e-7)
    # d/dk of 0.5 Σ (e^{-k t} - obs)^2 = Σ (e^{-k t} - obs)(-t e^{-k t})
    ts, obs = DECAY_TS, DECAY_OBSERVED[:, 0]
    grad = np.sum((np.exp(-0.5 * ts) - obs) * (-ts * np.exp(-0.5 * ts)))
    assert decay.plots.gradient.source.data["method"][0] == pytest.approx(grad, rel=1e-6)
    decay.t1 = 2.0  # the data reach t=4: the gradient view explains the problem
    assert "Widen the time span" in decay.status
    decay.t1 = 10.0


def test_training_dashboard_fits_the_data_and_keeps_the_best(decay):
    training = decay.training
    training.param.update(steps=30, every=1, learning_rate=0.05)
    training.train(wait=True)
    steps = list(training.plot.loss.data["step"])
    losses = np.asarray(training.plot.loss.data["loss"])
    assert len(steps) == 30 and not training.running
    assert losses[0] == pytest.approx(decay_loss(0.5), rel=1e-6)
    assert losses[-1] < 0.5 * losses[0]  # k moves from 0.5 towards the data's 0.7
    prediction = training.plot.prediction.source.data
    assert len(prediction["t"]) == 11
    training.use_best()
    best_k = decay.values["k"]
    assert 0.5 < best_k <= 0.75
    assert decay.stats["loss"] == pytest.approx(decay_loss(best_k), rel=1e-6)


def test_phase_helpers_on_closed_forms():
    xs = np.linspace(-2, 2, 41)
    ys = np.linspace(-2, 2, 37)
    X, Y = np.meshgrid(xs, ys)
    circle = zero_contour(X**2 + Y**2 - 1, xs, ys)
    r = np.hypot(np.concatenate([circle["x0"], circle["x1"]]),
                 np.concatenate([circle["y0"], circle["y1"]]))
    assert len(circle["x0"]) > 40 and np.max(np.abs(r - 1)) < 5e-3
    assert classify(np.array([-1.0, -2.0]))[0] == "stable node"
    assert classify(np.array([-1 + 2j, -1 - 2j]))[0] == "stable focus"
    assert classify(np.array([1.0, -2.0]))[0] == "saddle"
    assert classify(np.array([2j, -2j]))[0] == "center"
    # the damped pendulum rests at theta = 0 (stable focus) and is upside down at pi (saddle)
    pend = ol.gallery.damped_pendulum()
    found = find_equilibria(pend.f, 0.0, pend.y0, 0, 1, (-1.0, 4.0), (-1.0, 1.0),
                            {k: np.float64(v) for k, v in pend.params.items()})
    kinds = {round(float(e.state[0]), 8): e.kind for e in found}
    assert kinds[0.0] == "stable focus" and kinds[round(math.pi, 8)] == "saddle"


def test_errors_from_bad_targets_name_the_fix():
    with pytest.raises(ol.InputError, match="System or an Objective"):
        explore(42)
    with pytest.raises(ol.InputError, match="loss"):
        Objective(ol.gallery.exponential_decay(), loss="mse")


def test_serve_builds_a_page_and_the_command_line_reports_mistakes(capsys):
    import socket
    import urllib.request

    from odelab.ui.serve import cli_serve, explorer_factory, serve

    assert cli_serve(["no_such_module:thing"]) == 2
    assert "Could not import module 'no_such_module'" in capsys.readouterr().err
    assert cli_serve(["lorenzz"]) == 2
    assert "lorenz" in capsys.readouterr().err  # the gallery names are listed
    built = explorer_factory("odelab.gallery:exponential_decay")()
    assert isinstance(built, Explorer) and built.background
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = serve("exponential_decay", port=port, threaded=True)
    try:
        for _ in range(100):
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/odelab", timeout=60)
                break
            except OSError:
                threading.Event().wait(0.1)
        html = page.read().decode()
    finally:
        server.stop()
    assert "static/js/bokeh" in html and "cdn.bokeh.org" not in html  # served locally


def test_ipywidget_wrapper_builds(ex):
    widget = pn.ipywidget(ex)
    assert type(widget).__name__ == "BokehModel"


def test_method_menu_offers_only_methods_for_the_system_kind(ex):
    offered = set(ex.param.method.objects)
    registered = set(ol.methods().names())
    assert "delay-adjoint" in registered  # registered, but for DelaySystems only
    assert offered == {"auto"} | registered - {"delay-adjoint"}
    assert set(ex._widgets["method"].options.values()) == offered
    with pytest.raises(ol.InputError, match="delay-adjoint.*Choose from"):
        explore(ol.gallery.exponential_decay(), method="delay-adjoint")


def test_a_forced_system_is_not_classified_as_if_autonomous():
    # x' = -x + a cos(t), y' = -y: the snapshot at t0 has a fixed point (a cos(t0), 0) that is
    # no equilibrium of the system (it moves with t)
    forced = ol.System(lambda t, y, p: jnp.stack([-y[0] + p["a"] * jnp.cos(t), -y[1]]),
                       states=("x", "y"), params={"a": 1.0}, y0=[0.5, 0.5], t_span=(0.0, 6.0),
                       name="forced")
    explorer = explore(forced, n_save=61, solver="tsit5", compute_gradient=False)
    explorer.refresh()
    assert explorer.plots.phase.equilibria.data["kind"] == []
    assert "depends on t" in explorer.plots.phase.figure.title.text
    assert not depends_on_time(forced.f, (0.0, 6.0), [0.5, 0.5], 0, 1, (-1, 1), (-1, 1),
                               {"a": jnp.asarray(0.0)})  # no forcing: autonomous
    unforced = explore(ol.gallery.lotka_volterra(), n_save=N_SAVE, solver="tsit5",
                       compute_gradient=False)
    unforced.refresh()
    assert unforced.plots.phase.equilibria.data["kind"]  # classified as before
    assert "depends on t" not in unforced.plots.phase.figure.title.text


def test_the_layout_is_built_from_the_state_set_before_it():
    explorer = explore(ol.gallery.brusselator(), compute_gradient=False, n_save=101,
                       solver="tsit5")
    explorer.view = "Phase portrait"
    explorer.set_value("b", 3.5)
    explorer.__panel__()
    w = explorer._widgets
    assert w["tabs"].active == 1
    assert w["params"]["b"].value == pytest.approx(math.log10(3.5))  # log-scale slider
    w["tabs"].active = 0
    assert explorer.view == "Trajectory"
    explorer.view = "Stats"
    assert w["tabs"].active == 6
    assert "rejected steps" in w["stats"].object


def test_the_training_tab_says_what_it_fits(decay, ex):
    text = decay.training.description()
    assert "least squares vs data" in text and "5 observation times" in text
    assert "no observations" in ex.training.description()


def test_bokeh_loaders_leave_out_scripts_only_a_server_serves():
    # Bokeh's own notebook loader once Panel (with its ESM components) is imported: it lists
    # Panel's es-module-shims by a path only `panel serve` serves
    from bokeh.embed.bundle import bundle_for_objs_and_resources
    from bokeh.io.notebook import _loading_js
    from bokeh.resources import INLINE

    from odelab.ui.notebook import served_only, without_server_paths

    bundle = bundle_for_objs_and_resources(None, INLINE)
    urls = [str(url) for url in bundle.js_files]
    assert any(served_only(url) and "es-module-shims" in url for url in urls)
    js = _loading_js(bundle, None, register_mime=False)

    def parts(text):  # before the list of script URLs, the list, after it
        start = text.index("const js_urls = ") + len("const js_urls = ")
        end = text.index(";", start)
        return text[:start], json.loads(text[start:end]), text[end:]

    head, listed, tail = parts(js)
    assert listed == urls
    assert parts(without_server_paths(js)) == (
        head, [url for url in urls if not served_only(url)], tail)
    assert not served_only("https://cdn.example.org/static/extensions/x.js")
    assert not served_only("/lab/static/extensions/x.js")


def test_panel_messages_from_a_subshell_thread_are_handled_on_the_main_loop(monkeypatch):
    # JupyterLab >= 4.4 hands comm messages to kernel subshells (threads); Panel's must be
    # handled on the main thread, in the order they came, like every other change of its models
    import asyncio

    from odelab.ui import notebook

    handled = []

    def handle(comm, msg):
        handled.append((msg, threading.current_thread() is threading.main_thread()))

    wrapped = notebook.on_main_thread(handle)

    async def main():
        monkeypatch.setattr(notebook, "_MAIN_LOOP", [asyncio.get_running_loop()])
        senders = threading.Thread(target=lambda: [wrapped(None, k) for k in range(5)])
        senders.start()
        senders.join()
        wrapped(None, "main")  # on the main thread: handled at once
        assert handled == [("main", True)]
        await asyncio.sleep(0.05)  # the loop runs the handed-over calls

    asyncio.run(main())
    assert handled == [("main", True)] + [(k, True) for k in range(5)]
    monkeypatch.setattr(notebook, "_MAIN_LOOP", [])  # no loop known: called where it is
    thread = threading.Thread(target=wrapped, args=(None, "direct"))
    thread.start()
    thread.join()
    assert handled[-1] == ("direct", False)


def test_a_new_combination_tells_the_lab_it_is_compiling(ex):
    """The status bar's "compiling…" comes from these events: on while a new combination
    compiles, off after, balanced; a warm slider move announces nothing."""
    from odelab import _events

    seen = []

    def listener(**payload):
        seen.append(payload["active"])

    with _events.listening(_events.COMPILING, listener):
        ex.n_save = N_SAVE + 2  # a new static combination: compiles
        compiled = list(seen)
        seen.clear()
        ex.set_value("alpha", ex.values["alpha"] * 1.01)  # warm: no compile
        warm = list(seen)
    ex.n_save = N_SAVE
    assert compiled and compiled[0] is True
    assert compiled.count(True) == compiled.count(False)
    depth = 0  # announcements nest (a stage's own solve announces too); never negative
    for active in compiled:
        depth += 1 if active else -1
        assert depth >= 0
    assert warm == []
    assert ex.status_level == "success", ex.status
