"""The Training tab: a live dashboard for `ol.fit` on the explorer's loss.

Training runs on its own thread (it takes many steps); the loss curve and the prediction update
every few steps, Stop ends it after the current step, and the best parameters seen are kept and
can be copied back to the sliders.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np
import panel as pn
import param

from .compute import plain_error
from .explorer import Explorer, _optional


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

    def train(self, *_: Any, wait: bool = False) -> None:
        """Start training from the current slider values (on a thread unless `wait`)."""
        fit = _optional("fit")
        if fit is None or self.running:
            return
        import optax

        ex = self.explorer
        s = ex.settings()
        fun = ex.engine.closed_loss(s)
        start = ex.engine.params(s)
        names = [k for k, _ in s.values]
        doc = pn.state.curdoc
        self.plot.loss.data = {"step": [], "loss": []}
        self.running = True
        self.message = "Training…"

        def callback(event) -> None:
            self.result = event.result
            losses = {"step": [event.step], "loss": [float(event.loss)]}
            prediction = None
            if isinstance(event.params, dict) and names:
                values = tuple((k, float(event.params[k])) for k in names)
                try:
                    prediction = ex.engine.trajectory(dataclasses.replace(s, values=values)).value
                except Exception:  # a bad intermediate step: keep the last prediction
                    prediction = None

            def draw() -> None:
                self.plot.loss.stream(losses)
                if prediction is not None:
                    self.plot.prediction.show(prediction)
                self.message = f"step {event.step}: loss {float(event.loss):.6g}"

            ex._finish(doc, draw)

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

            ex._finish(doc, done)

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
            pn.pane.Str(self.param.message),
            pn.pane.Bokeh(self.plot.figure, sizing_mode="stretch_width"),
            pn.pane.Bokeh(self.plot.prediction.figure, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
