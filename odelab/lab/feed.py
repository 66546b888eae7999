"""What the library announces, written into the registry the JupyterLab sidebar shows.

`connect(registry)` subscribes to odelab's events (`odelab._events`) and keeps the registry
current: systems as they are defined; the most recent solves ("runs", with their time, steps and
status); objectives handed to the gradient check, the explorer or a fit, each with its last
verdict; fits with their live progress, loss and best loss. The library never imports this
module: it only emits events.
"""

from __future__ import annotations

import collections
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from .. import _events
from .registry import Registry

MAX_RUNS = 20  # the sidebar shows this many recent solves
MAX_OBJECTIVES = 20
OWNED_MARK = "__odelab_owned__"
"""An attribute set (True) on loss functions whose owner (an explorer) decides how long they
live: the sidebar holds those weakly."""


class Run:
    """One finished solve, as the sidebar lists it."""

    def __init__(self, system: Any, solution: Any, seconds: float, compiled: bool,
                 solver: str, method: str, t_span: tuple[float, float]):
        self.system_name = getattr(system, "name", "system")
        self.solution = solution
        self.fields = {
            "system": self.system_name,
            "solver": solver,
            "method": method,
            "t_span": list(t_span),
            "seconds": float(seconds),
            "compiled": bool(compiled),
            "steps": int(solution.num_steps),
            "ok": bool(solution.ok),
            "status": "ok" if solution.ok else solution.message,
            "finished": time.time(),
        }


class ObjectiveItem:
    """A loss function and its parameters, so the sidebar can check its gradient again.

    `options` are the keyword arguments of the last `ol.check_gradient` call on it (methods,
    rtols, ...): checking again from the sidebar repeats that check. A loss that belongs to an
    explorer (it carries `OWNED_MARK`, set by the explorer's engine) is held weakly, so the item
    goes when the explorer is dropped (`on_dead` is then called).
    """

    def __init__(self, fun: Callable, params: Any, name: str, source: str,
                 options: dict[str, Any] | None = None,
                 on_dead: Callable[[ObjectiveItem], None] | None = None):
        self.params, self.name, self.source = params, name, source
        self.sources = [source] if source else []  # every place it was handed to, in order
        self.options: dict[str, Any] = dict(options or {})
        self._fun: Any = fun
        if getattr(fun, OWNED_MARK, False) and on_dead is not None:
            try:
                self._fun = weakref.ref(fun, lambda _ref: on_dead(self))
            except TypeError:  # not weakly referable: held like the others
                pass

    @property
    def fun(self) -> Callable | None:
        return self._fun() if isinstance(self._fun, weakref.ref) else self._fun


def objective_name(fun: Any) -> str:
    """A readable name for a loss function (its __name__, or what it belongs to)."""
    name = getattr(fun, "__name__", None) or type(fun).__name__
    if name == "<lambda>":
        return "lambda loss"
    return name


class Feed:
    """The subscriptions that keep one registry current (see the module docstring)."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self._lock = threading.Lock()
        self._runs: collections.deque[Run] = collections.deque(maxlen=MAX_RUNS)
        self._objectives: collections.OrderedDict[int, ObjectiveItem] = collections.OrderedDict()
        self._unsubscribe = [
            _events.subscribe(_events.SYSTEM, self.on_system),
            _events.subscribe(_events.SOLVE, self.on_solve),
            _events.subscribe(_events.OBJECTIVE, self.on_objective),
            _events.subscribe(_events.CHECKED, self.on_checked),
            _events.subscribe(_events.FIT, self.on_fit),
        ]

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    # -- listeners -------------------------------------------------------------------------------
    def on_system(self, *, system: Any, **_: Any) -> None:
        names = getattr(system, "param_names", ())
        params = system.params
        shown = {k: float(params[k]) for k in names} if names else type(params).__name__
        fields = {"states": list(system.states), "params": shown,
                  "system_kind": getattr(system, "kind", "ode")}
        self.registry.track(system, "system", system.name, **fields)

    def on_solve(self, *, system: Any, solution: Any, seconds: float, compiled: bool,
                 solver: str, method: str, t_span: tuple[float, float], **_: Any) -> None:
        run = Run(system, solution, seconds, compiled, solver, method, t_span)
        with self._lock:
            dropped = self._runs[0] if len(self._runs) == self._runs.maxlen else None
            self._runs.append(run)
        if dropped is not None:
            self.registry.untrack(dropped)
        self.registry.track(run, "run", f"{run.system_name} ({solver})", **run.fields)
        timing = {"compile_time_s": seconds} if compiled else {"run_time_s": seconds}
        self.registry.update(system, last_solver=solver, last_method=method, **timing)

    def on_objective(self, *, fun: Callable, params: Any, name: str | None = None,
                     source: str = "", options: dict[str, Any] | None = None,
                     **_: Any) -> None:
        key = id(fun)
        with self._lock:
            item = self._objectives.get(key)
            if item is not None and item.fun is not fun:  # an id reused by a new function
                item = None
            if item is None and source == "explore":
                # a second explorer of the same system and loss (the sidebar's own tab of a
                # system explored in the notebook, say) is the same objective: one item
                item = self._same_explorer_objective(name or objective_name(fun))
                if item is not None:
                    key = next(k for k, held in self._objectives.items() if held is item)
            if item is None:
                item = ObjectiveItem(fun, params, name or objective_name(fun), source, options,
                                     on_dead=self._forget_objective)
                self._objectives[key] = item
            else:
                item.params = params
                if options is not None:
                    item.options = dict(options)
                if source and source not in item.sources:
                    item.sources.append(source)
            self._objectives.move_to_end(key)
            dropped = []
            while len(self._objectives) > MAX_OBJECTIVES:
                dropped.append(self._objectives.popitem(last=False)[1])
        for old in dropped:
            self.registry.untrack(old)
        n = _count(params)
        # last_used: the palette's check picks the objective used most recently
        self.registry.track(item, "objective", item.name, source=source,
                            sources=list(item.sources), n_params=n, last_used=time.time())

    def _same_explorer_objective(self, name: str) -> ObjectiveItem | None:
        """A live objective an explorer registered under `name` (call with the lock held)."""
        for held in self._objectives.values():
            if held.name == name and "explore" in held.sources and held.fun is not None:
                return held
        return None

    def _forget_objective(self, item: ObjectiveItem) -> None:
        """An explorer's loss was collected: its item leaves the feed and the registry."""
        with self._lock:
            for key, held in list(self._objectives.items()):
                if held is item:
                    del self._objectives[key]
        self.registry.untrack(item)

    def on_checked(self, *, fun: Callable, params: Any = None, report: Any, **_: Any) -> None:
        with self._lock:
            item = self._objectives.get(id(fun))
        if item is None or item.fun is not fun:
            self.on_objective(fun=fun, params=params, source="check")
            with self._lock:
                item = self._objectives.get(id(fun))
        self.registry.update(item, checked=time.time(), last_used=time.time(),
                             **report_fields(report))

    def on_fit(self, *, result: Any, done: bool = False, name: str = "fit",
               fun: Callable | None = None, **_: Any) -> None:
        target = max(int(result.target_steps), 0)
        fields = {
            # progress: the fraction done, 0..1 (the sidebar's bar); steps/target_steps: counts
            "progress": min(1.0, result.steps / target) if target else (1.0 if done else 0.0),
            "steps": result.steps,
            "target_steps": target,
            "loss": result.losses[-1] if result.losses else None,
            "best": result.best_loss if result.best_loss != float("inf") else None,
            "best_step": result.best_step if result.best_step >= 0 else None,
            "done": bool(done),
            "interrupted": bool(result.interrupted),
            "stop_reason": result.stop_reason,
        }
        if fun is not None:  # the loss being fitted, if it is listed as an objective
            with self._lock:
                item = self._objectives.get(id(fun))
            objective_id = self.registry.id_of(item) if item is not None else None
            if objective_id is not None:
                fields["objective_id"] = objective_id
        if self.registry.update(result, **fields) is None:
            self.registry.track(result, "fit", name, **fields)


def report_fields(report: Any) -> dict[str, Any]:
    """What the sidebar shows of a gradient report: its verdict, headline and method verdicts."""
    verdict = getattr(report, "overall", None) or getattr(report, "verdict", None)
    if not isinstance(verdict, str):
        verdict = "accurate" if getattr(report, "ok", False) else "inaccurate"
    headline = getattr(report, "headline", None)
    if not isinstance(headline, str):
        headline = str(report).split("\n", 1)[0]
    rows = getattr(report, "rows", None) or []
    methods = [f"{getattr(r, 'label', '?')}: {getattr(r, 'verdict', '?')}" for r in rows]
    return {"verdict": verdict, "headline": headline, "methods": methods}


def _count(params: Any) -> int:
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params)
                   if hasattr(x, "shape") or isinstance(x, (int, float))))


def connect(registry: Registry) -> Feed:
    """Start feeding `registry` from the library's events; `Feed.close()` stops it."""
    return Feed(registry)
