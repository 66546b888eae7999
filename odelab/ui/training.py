"""The Training tab: a live dashboard for `ol.fit` on the explorer's loss.

Training runs on its own thread (it takes many steps); the loss curve and the prediction update
every few steps, Stop ends it after the current step, and the best parameters seen are kept and
can be copied back to the sliders. The plots are changed on the kernel's event loop (see
`Explorer._finish`), one update after the other, never from the training thread itself.

The loss curve is sent whole at each update, not streamed: Panel's page side sends what the kernel
streams back to it, and the kernel appends it a second time (the line then runs back to step 0).
odelab.ui.notebook filters those echoes in the page; a whole curve stays right even without.
"""

from __future__ import annotations

import dataclasses
import html
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import panel as pn
import param

from .compute import plain_error
from .layout import LiveHTML
from .notebook import running_loop
from .options import optional

if TYPE_CHECKING:  # the explorer owns this panel; it is not imported at run time
    from .explorer import Explorer


class TrainingPanel(pn.viewable.Viewer):
    """Runs `ol.fit(loss, params)` for the explorer's objective and draws its progress."""

    learning_rate = param.Number(default=1e-2, bounds=(1e-5, 1.0), doc="Adam step size.")
    steps = param.Integer(default=200, bounds=(1, 100_000), doc="Optimizer steps.")
    every = param.Integer(default=5, bounds=(1, 1000), doc="Steps between plot updates.")
    running = param.Boolean(default=False)
    message = param.String(default="Press Train to fit the parameters to the loss.")

    def __init__(self, explorer: Explorer, **params: Any):
        super().__init__(**params)
        self.explorer = explorer
        self.plot = explorer.plots.training
        self.result = None
        self._thread: threading.Thread | None = None
        self._message = LiveHTML(self.message)
        self.param.watch(lambda e: setattr(self._message, "object", html.escape(e.new)),
                         "message")

    def description(self) -> str:
        """What a fit minimises, over which parameters, against which data (HTML)."""
        ex = self.explorer
        objective = ex.objective
        names = ", ".join(ex.values) or "none"
        text = (f"Fits the parameters <b>{html.escape(names)}</b> of "
                f"<b>{html.escape(ex.system.name)}</b>, starting from the sliders, by minimising "
                f"the loss <b>{html.escape(objective.loss_name)}</b> with Adam.")
        if objective.data is not None:
            ts, ys = objective.data
            text += (f" Data: {len(ts)} observation times from t = {ts[0]:g} to {ts[-1]:g} "
                     "(dots in the plot below; lines: the model's prediction).")
        else:
            text += (" This system has no observations: the plot below shows the predicted "
                     "trajectory only. Give data with "
                     "<code>ol.explore(system, data=(ts, ys))</code> to fit them.")
        return text

    def train(self, *_: Any, wait: bool = False) -> None:
        """Start training from the current slider values (on a thread unless `wait`)."""
        fit = optional("fit")
        if fit is None or self.running:
            return
        import optax

        ex = self.explorer
        s = ex.settings()
        fun = ex.engine.closed_loss(s)
        start = ex.engine.params(s)
        names = [k for k, _ in s.values]
        doc, loop = pn.state.curdoc, running_loop()
        history: dict[str, list] = {"step": [], "loss": []}
        self.plot.loss.data = {"step": [], "loss": []}
        self.running = True
        self.message = "Training…"
        ex._push()

        def callback(event) -> None:
            self.result = event.result
            step, loss = int(event.step), float(event.loss)
            prediction = None
            if isinstance(event.params, dict) and names:
                values = tuple((k, float(event.params[k])) for k in names)
                try:
                    prediction = ex.engine.trajectory(dataclasses.replace(s, values=values)).value
                except Exception:  # a bad intermediate step: keep the last prediction
                    prediction = None

            def draw() -> None:
                history["step"].append(step)
                history["loss"].append(loss)
                self.plot.loss.data = {k: list(v) for k, v in history.items()}
                if prediction is not None:
                    self.plot.prediction.show(prediction)
                self.message = f"step {step}: loss {loss:.6g}"
                ex._push()

            ex._finish(doc, draw, loop)

        def run() -> None:
            try:
                result = fit(fun, start, optimizer=optax.adam(self.learning_rate),
                             steps=int(self.steps), method=s.method, solver=s.solver,
                             rtol=s.rtol, atol=s.atol, callback=callback,
                             callback_every=int(self.every), progress=False)
                self.result = result
                text = (f"Finished {result.steps} steps; best loss {result.best_loss:.6g} at step "
                        f"{result.best_step}." + (f" Stopped: {result.stop_reason}."
                                                  if result.interrupted else ""))
            except Exception as err:
                text = f"Training failed: {plain_error(err)}"

            def done() -> None:
                self.running = False
                self.message = text
                ex._push()

            ex._finish(doc, done, loop)

        if wait:
            run()
        else:
            self._thread = threading.Thread(target=run, name="odelab-fit", daemon=True)
            self._thread.start()

    def stop(self, *_: Any) -> None:
        """Stop after the current step; the best parameters are kept."""
        if self.result is not None:
            self.result.stop()

    def use_best(self, *_: Any) -> None:
        """Copy the best parameters found to the explorer's sliders."""
        best = getattr(self.result, "best_params", None)
        if isinstance(best, dict):
            values = {k: float(np.asarray(best[k])) for k in self.explorer.values if k in best}
            self.explorer.values = {**self.explorer.values, **values}

    def __panel__(self):
        train = pn.widgets.Button(label="Train", color="primary", width=90)
        train.on_click(self.train)
        stop = pn.widgets.Button(label="Stop", color="danger", width=90)
        stop.on_click(self.stop)
        best = pn.widgets.Button(label="Use best parameters", width=180)
        best.on_click(self.use_best)
        return pn.Column(
            pn.Row(pn.widgets.FloatInput.from_param(self.param.learning_rate, width=120),
                   pn.widgets.IntInput.from_param(self.param.steps, width=100), train, stop,
                   best),
            pn.pane.HTML(self.description(), sizing_mode="stretch_width"),
            self._message,
            pn.pane.Bokeh(self.plot.figure, sizing_mode="stretch_width"),
            pn.pane.Bokeh(self.plot.prediction.figure, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
