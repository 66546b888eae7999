"""Training: `fit` (optax loops with progress, live callbacks, checkpoints) and `newton_krylov`.

`fit` trains either a user loss `loss(params)` / `loss(params, batch)` or a System against
observed trajectories. One jitted step (gradient through the solves with the chosen method, then
the optax update) is compiled once per fit; new parameter values never recompile. Mini-batches
are a pure function of (seed, step), and checkpoints hold the parameters, optimizer state, best
parameters and history, so a resumed run is bit-for-bit the run that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import _events
from .._errors import InputError, SolveError
from .._inputs import accepts, check_count, check_flag, float_array
from .._progress import ProgressBar
from .._version import __version__
from ..derivatives import (
    Plan,
    gradient_function,
    hvp,
    make_plan,
    objective,
    split_params,
    tolerances,
    value_and_gradient,
)
from ..solve import solve
from ..system import System
from .fields import vmap_solves

CHECKPOINT_FILE = "fit_checkpoint.npz"


# --------------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------
# results and events
# --------------------------------------------------------------------------------------------
class FitResult:
    """The outcome of `ol.fit` (and, while it runs, its live state).

    params: parameters after the last step; best_params / best_loss / best_step: the lowest loss
    seen (the loss at a step is that of the parameters going into it); losses: one per step;
    opt_state: the optax state (pass both to a new fit to continue); steps: steps done;
    interrupted: stopped before `steps` (callback, `stop()`, Ctrl-C, NaN or a failed solve);
    stop_reason: why, in words.

    `stop()` asks a running fit to stop after the current step (e.g. from a UI button on another
    thread); the best parameters are kept.
    """

    def __init__(self) -> None:
        self.params: Any = None
        self.best_params: Any = None
        self.best_loss = float("inf")
        self.best_step = -1
        self.losses: list[float] = []
        self.opt_state: Any = None
        self.steps = 0
        self.target_steps = 0
        self.interrupted = False
        self.stop_reason = ""
        self.seconds = 0.0
        self.checkpoint_path: str | None = None
        self._stop_requested = False

    def stop(self) -> None:
        """Ask the running fit to stop after the current step."""
        self._stop_requested = True

    @property
    def loss(self) -> float:
        """The last recorded loss."""
        return self.losses[-1] if self.losses else float("nan")

    def __repr__(self) -> str:
        state = f"interrupted ({self.stop_reason})" if self.interrupted else "done"
        return (f"FitResult({self.steps} steps, loss {self.loss:.6g}, best {self.best_loss:.6g} "
                f"at step {self.best_step}, {state})")

    def _repr_html_(self) -> str:
        rows = [
            ("steps", f"{self.steps} of {self.target_steps}"),
            ("last loss", f"{self.loss:.6g}"),
            ("best loss", f"{self.best_loss:.6g} (step {self.best_step})"),
            ("status", f"interrupted: {self.stop_reason}" if self.interrupted else "finished"),
            ("time", f"{self.seconds:.2f} s"),
        ]
        if self.checkpoint_path:
            rows.append(("checkpoint", self.checkpoint_path))
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(v)}</td></tr>"
                       for k, v in rows)
        return f"<div><b>FitResult</b><table>{body}</table></div>"


@dataclasses.dataclass
class FitEvent:
    """What a `fit` callback receives: return False from the callback to stop training."""

    step: int
    loss: float
    params: Any
    predictions: Any
    result: FitResult


# --------------------------------------------------------------------------------------------
# what is being fitted
# --------------------------------------------------------------------------------------------
def _mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error over the observed (finite) entries of `target`."""
    observed = jnp.isfinite(target)
    diff = jnp.where(observed, pred - jnp.where(observed, target, 0.0), 0.0)
    return jnp.sum(diff**2) / jnp.maximum(jnp.sum(observed), 1)


def _system_problem(system: System, data: Any, loss: Callable | None):
    """(loss_fn(params, batch) -> (loss, predictions), batch data) for trajectory data."""

    if data is None:
        if system.data is None:
            raise InputError(
                f"`data` is needed to fit system {system.name!r}: give data=(ts, ys) with ys of "
                "shape (n_times, n_states) or (n_trajectories, n_times, n_states)."
            )
        data = system.data
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise InputError(
            "`data` for a System must be (ts, ys) or (ts, ys, y0s): observation times, observed "
            "states (NaN where unobserved), and optionally the initial states of each trajectory."
        )
    ts = float_array("data[0] (times)", data[0])
    ys = float_array("data[1] (values)", data[1])
    n_states = len(system.states)
    if ys.ndim == 2:
        ys = ys[None]
    if ys.ndim != 3 or ys.shape[1:] != (ts.shape[0], n_states):
        raise InputError(
            f"`data` values have shape {ys.shape}; expected (n_times={ts.shape[0]}, "
            f"n_states={n_states}) or (n_trajectories, {ts.shape[0]}, {n_states})."
        )
    if ts.ndim != 1 or ts.size < 2 or np.any(np.diff(ts) <= 0):
        raise InputError("`data` times must be a 1-D increasing array of at least 2 times.")
    if len(data) == 3:
        y0s = float_array("data[2] (initial states)", data[2]).reshape(-1, n_states)
        t0 = min(float(system.t_span[0]), float(ts[0]))
    else:
        y0s = ys[:, 0]
        t0 = float(ts[0])
        if not np.all(np.isfinite(y0s)):
            raise InputError(
                "The first observation of some trajectory has NaN entries, so it cannot serve as "
                "the initial state. Pass data=(ts, ys, y0s) with the initial states."
            )
    if y0s.shape[0] != ys.shape[0]:
        raise InputError(
            f"`data` has {ys.shape[0]} trajectories but {y0s.shape[0]} initial states."
        )
    t_span = (t0, float(ts[-1]))
    per_trajectory = loss if loss is not None else _mse

    def loss_fn(params, batch):
        pred = vmap_solves(
            lambda y0: solve(system, y0=y0, params=params, t_span=t_span, saveat=ts).ys,
            batch["y0"],
        )
        return per_trajectory(pred, batch["ys"]), pred

    return loss_fn, {"ys": ys, "y0": y0s}


def _user_problem(loss: Callable, data: Any, has_aux: bool):
    if data is not None and not accepts(loss, 2):
        raise InputError(
            f"`data` was given, so the loss is called as loss(params, batch), but "
            f"{getattr(loss, '__name__', 'the loss')} takes only the parameters. Pass data=None, "
            "or add the batch argument.")
    if data is None:
        def loss_fn(params, batch):
            out = loss(params)
            return out if has_aux else (out, None)
    else:
        def loss_fn(params, batch):
            out = loss(params, batch)
            return out if has_aux else (out, None)

    return loss_fn, data


def _batch_indices(n: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Members of the mini-batch at `step`: a fresh permutation per epoch, from (seed, epoch).

    A pure function of the step, so a resumed run draws exactly the batches it would have.
    """
    per_epoch = n // batch_size
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[position * batch_size:(position + 1) * batch_size]


def _data_size(data: Any) -> int:
    sizes = {np.shape(x)[0] for x in jax.tree_util.tree_leaves(data) if np.ndim(x) > 0}
    if len(sizes) != 1:
        raise InputError(
            "`data` must be arrays sharing one leading (batch) axis to draw mini-batches from; "
            f"got leading sizes {sorted(sizes) or 'none'}."
        )
    return sizes.pop()


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
def _signature(tree: Any) -> str:
    return ";".join(f"{np.shape(x)}:{np.asarray(x).dtype}" for x in jax.tree_util.tree_leaves(tree))


# What a checkpoint was trained on, so that a fit never resumes (or returns) another run: the
# loss as traced (its code, the values it captures and the system it solves, as one jaxpr with
# its constants), the optimizer (its init and update traced the same way, so a learning rate or
# a schedule is part of it, and inject_hyperparams values too), the data (shapes and contents),
# the parameters' structure and the gradient settings. Tracing rather than reading the loss's
# source and closure: two spellings of one computation agree, and what the loss merely touches
# (a list it appends to, a logger) does not count.
_FINGERPRINT_PARTS = {
    "loss": "the loss function (its code, the values it captures, or the system it solves)",
    "optimizer": "the optimizer",
    "data": "the data",
    "params": "the parameter structure",
    "settings": "the gradient settings",
}
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _digest_jaxpr(fun: Callable, *args: Any) -> str:
    """A hash of what `fun(*args)` computes: its jaxpr, constants included (by content)."""
    closed = jax.make_jaxpr(fun)(*args)
    digest = hashlib.sha256(_ADDRESS.sub("", str(closed.jaxpr)).encode())
    for const in closed.consts:
        _update_with_array(digest, const)
    return digest.hexdigest()


def _update_with_array(digest: Any, x: Any) -> None:
    if isinstance(x, (np.ndarray, np.generic, jax.Array)):
        a = np.asarray(x)
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    else:
        digest.update(_ADDRESS.sub("", repr(x)).encode())


def _describe_data(data: Any) -> tuple[str, str]:
    """(shapes and dtypes in words, a hash of the contents) of a pytree of arrays."""
    leaves, treedef = jax.tree_util.tree_flatten(data)
    digest = hashlib.sha256(_ADDRESS.sub("", str(treedef)).encode())
    for leaf in leaves:
        _update_with_array(digest, leaf)
    shapes = ", ".join(f"{np.asarray(x).dtype}{list(np.shape(x))}" for x in leaves)
    return shapes or "none", digest.hexdigest()


def _hyperparameters(optimizer: Any) -> dict[str, str]:
    """Readable numbers an optax optimizer closes over, e.g. {"scale.step_size": "-0.01"}.

    Only for the message when the optimizer differs; the comparison itself uses the trace.
    """
    found: dict[str, str] = {}
    seen: set[int] = set()

    def walk(obj: Any, where: str, depth: int) -> None:
        if depth > 8 or id(obj) in seen or len(found) >= 40:
            return
        seen.add(id(obj))
        if isinstance(obj, (bool, int, float, complex, str)) or (
                isinstance(obj, (np.ndarray, np.generic, jax.Array)) and np.ndim(obj) == 0):
            key, n = where, 2
            while key in found:
                key, n = f"{where}#{n}", n + 1
            found[key] = repr(obj.item() if hasattr(obj, "item") else obj)
        elif callable(obj) and hasattr(obj, "__code__"):
            owner = obj.__qualname__.split(".<locals>")[0]
            for name, cell in zip(obj.__code__.co_freevars, obj.__closure__ or ()):
                try:
                    walk(cell.cell_contents, f"{owner}.{name}", depth + 1)
                except ValueError:  # an empty cell
                    continue
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{where}.{k}", depth + 1)
        elif isinstance(obj, (tuple, list)):
            for v in obj:
                walk(v, where, depth + 1)

    walk((optimizer.init, optimizer.update), "optimizer", 0)
    return found


def _fingerprint(loss_fn: Callable, static: Any, diff: Any, batch: Any, data: Any,
                 optimizer: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """What a fit trains, part by part (see _FINGERPRINT_PARTS), for its checkpoint."""
    loss = _digest_jaxpr(lambda d, b: loss_fn(eqx.combine(d, static), b), diff, batch)
    opt_state = optimizer.init(diff)
    optimizer_digest = hashlib.sha256(
        (_digest_jaxpr(optimizer.init, diff)
         + _digest_jaxpr(optimizer.update, diff, opt_state, diff)).encode()).hexdigest()
    shapes, data_digest = _describe_data(data)
    leaves, treedef = jax.tree_util.tree_flatten(diff)
    shapes_of_params = [f"{np.asarray(x).dtype}{list(np.shape(x))}" for x in leaves]
    structure = _ADDRESS.sub("", f"{treedef} {shapes_of_params}")
    words = {k: _ADDRESS.sub("", repr(v)) for k, v in settings.items()}
    return {
        "loss": loss, "optimizer": optimizer_digest, "data": data_digest,
        "params": hashlib.sha256(structure.encode()).hexdigest(),
        "settings": json.dumps(words, sort_keys=True),
        # for the message only
        "data_shapes": shapes, "hyperparameters": _hyperparameters(optimizer),
        "versions": f"jax {jax.__version__}, odelab {__version__}",
    }


def _fingerprint_mismatch(path: str, old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """Why the checkpoint at `path` is of another fit, in words ("" when it is this one's)."""
    if old is None:
        return (f"The checkpoint {path!r} was written by an older odelab that did not record what "
                "it trained, so resuming could continue another loss or optimizer.")
    differ = [part for part in _FINGERPRINT_PARTS if old.get(part) != new[part]]
    if not differ:
        return ""
    details = []
    for part in differ:
        text = _FINGERPRINT_PARTS[part]
        if part == "optimizer":
            before, now = old.get("hyperparameters", {}), new["hyperparameters"]
            changed = [f"{k} {before.get(k, 'absent')} in the checkpoint, {now.get(k, 'absent')} "
                       "now" for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
            text += (f" ({'; '.join(changed[:6])})" if changed else
                     " (its transformations or their hyperparameters)")
        elif part == "data":
            if old.get("data_shapes") != new["data_shapes"]:
                text += (f" (shapes {old.get('data_shapes')} in the checkpoint, "
                         f"{new['data_shapes']} now)")
            else:
                text += " (same shapes, other values)"
        elif part == "settings":
            before, now = json.loads(old["settings"]), json.loads(new["settings"])
            text += " (" + "; ".join(f"{k}={before.get(k)} in the checkpoint, {now[k]} now"
                                     for k in now if before.get(k) != now[k]) + ")"
        details.append(text)
    message = (f"The checkpoint {path!r} was written by a fit that differs from this one in "
               f"{'; and in '.join(details)}.")
    if old.get("versions") != new["versions"] and set(differ) <= {"loss", "optimizer"}:
        message += (f" It was written with {old.get('versions')} (now {new['versions']}); an "
                    "upgrade can change how a loss is traced.")
    return message


def _save_checkpoint(path: str, state: dict[str, Any], result: FitResult, seed: int,
                     fingerprint: dict[str, Any] | None = None) -> None:
    trees = (state["diff"], state["opt_state"], state["best"])
    leaves = jax.tree_util.tree_leaves(trees)
    arrays = {f"leaf_{i}": np.asarray(x) for i, x in enumerate(leaves)}
    tmp = path + ".tmp.npz"
    np.savez(
        tmp, **arrays, n_leaves=len(leaves), step=result.steps, seed=seed,
        best_loss=result.best_loss, best_step=result.best_step,
        losses=np.asarray(result.losses, dtype=np.float64), signature=_signature(trees),
        fingerprint=json.dumps(fingerprint),
    )
    os.replace(tmp, path)  # atomic: an interruption never leaves half a checkpoint


def _load_checkpoint(path: str, state: dict[str, Any], result: FitResult, seed: int,
                     fingerprint: dict[str, Any] | None = None, force: bool = False) -> bool:
    trees = (state["diff"], state["opt_state"], state["best"])
    with np.load(path) as ck:
        if str(ck["signature"]) != _signature(trees):
            raise InputError(
                f"The checkpoint {path!r} was written for parameters or an optimizer of another "
                "shape. Use another checkpoint_dir, delete the file, or pass resume=False."
            )
        stored = json.loads(str(ck["fingerprint"])) if "fingerprint" in ck.files else None
        why = "" if force or fingerprint is None else _fingerprint_mismatch(path, stored,
                                                                            fingerprint)
        if why:
            raise InputError(
                f"{why} Resuming would continue (or, if it had finished, return) that run "
                "instead of training this one. To start fresh, pass resume=False (the "
                "checkpoint is then overwritten) or use another checkpoint_dir; to continue "
                "that run with what you pass now, pass resume='force'."
            )
        if int(ck["seed"]) != seed:
            raise InputError(
                f"The checkpoint {path!r} was written with seed={int(ck['seed'])}; resuming with "
                f"seed={seed} would draw different batches. Pass seed={int(ck['seed'])}."
            )
        leaves = [jnp.asarray(ck[f"leaf_{i}"]) for i in range(int(ck["n_leaves"]))]
        treedef = jax.tree_util.tree_structure(trees)
        state["diff"], state["opt_state"], state["best"] = jax.tree_util.tree_unflatten(
            treedef, leaves)
        result.steps = int(ck["step"])
        result.best_loss = float(ck["best_loss"])
        result.best_step = int(ck["best_step"])
        result.losses = [float(v) for v in ck["losses"]]
    return True


# --------------------------------------------------------------------------------------------
# the training loop
# --------------------------------------------------------------------------------------------
def _make_step(loss_fn: Callable, static: Any, plan: Plan, optimizer: Any) -> Callable:
    import optax

    @eqx.filter_jit
    def step(diff, opt_state, batch, rtol, atol):
        call = objective(lambda p: loss_fn(p, batch), static, plan)
        (value, predictions, grads), codes = gradient_function(plan, call)(diff, rtol, atol)
        updates, opt_state = optimizer.update(grads, opt_state, diff)
        status = jnp.max(jnp.stack([jnp.asarray(c) for c, _ in codes])) if codes else 0
        return optax.apply_updates(diff, updates), opt_state, value, predictions, status

    return step


def fit(
    target: System | Callable,
    params: Any = None,
    data: Any = None,
    *,
    optimizer: Any = None,
    steps: int = 1000,
    method: Any = "auto",
    solver: Any = None,
    rtol: Any = None,
    atol: Any = None,
    loss: Callable | None = None,
    has_aux: bool = False,
    batch_size: int | None = None,
    callback: Callable[[FitEvent], Any] | None = None,
    callback_every: int = 1,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    resume: bool | str = True,
    progress: bool = True,
    seed: int = 0,
) -> FitResult:
    """Train parameters with an optax optimizer; returns a `FitResult`.

    Two ways to say what is trained:
      * ``fit(loss, params)``: minimise ``loss(params)``; with ``data`` (a pytree of arrays with a
        leading batch axis) ``loss(params, batch)`` gets mini-batches of `batch_size` members
        (all of `data` when batch_size is None). With has_aux=True, loss returns
        (value, predictions) and the predictions reach the callback.
      * ``fit(system, params=None, data=(ts, ys))``: fit `system` (its parameters, or `params`)
        to trajectories. ys is (n_times, n_states) or (n_trajectories, n_times, n_states), NaN
        where unobserved; each trajectory starts from its first observation unless
        data=(ts, ys, y0s) gives the initial states. `loss(pred_ys, ys)` replaces the default
        mean squared error. Mini-batches are batches of trajectories.

    optimizer: an optax GradientTransformation (default ``optax.adam(1e-2)``).
    method, solver, rtol, atol: how the solves are differentiated (see ``ol.methods()``).
    callback: called with a `FitEvent` (step, loss, params, predictions, result) every
      `callback_every` steps; returning False stops training. ``event.result.stop()`` (e.g. from
      another thread) and Ctrl-C stop it too; the best parameters are kept either way.
    checkpoint_dir: save a checkpoint every `checkpoint_every` steps, at the end and on
      interruption; with resume=True a fit finding a checkpoint there continues from it to
      `steps` in total, exactly as if it had never stopped. The checkpoint records what it
      trained (the loss as traced, with the values it captures; the optimizer and its
      hyperparameters; the data; the parameter structure; method, solver, tolerances and
      batch size), and a fit of anything else refuses to resume from it with an InputError
      saying what differs. resume=False starts fresh (overwriting the checkpoint);
      resume="force" continues the checkpointed run with what is passed now.
    progress: show a progress bar (tqdm when installed). seed: drives the mini-batch order.

        >>> result = ol.fit(ol.gallery.neural_ode(), data=(ts, ys), steps=500)
        >>> result.best_params, result.losses[-1]
    """
    import optax

    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise InputError(f"`steps={steps!r}` must be a whole number of optimizer steps (≥ 0).")
    callback_every = check_count("callback_every", callback_every, default=1, example=10)
    checkpoint_every = check_count("checkpoint_every", checkpoint_every, default=100,
                                   example=100)
    if callback is not None and not accepts(callback, 1):
        raise InputError(f"`callback={callback!r:.60}` must be a function of a FitEvent (or None).")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (
            0 <= seed < 2**63):
        raise InputError(f"`seed={seed!r:.60}` must be a whole number from 0 to 2**63 - 1.")
    progress = check_flag("progress", progress)
    has_aux = check_flag("has_aux", has_aux)
    if not isinstance(resume, (bool, str)) or resume not in (True, False, "force"):
        raise InputError(
            f"`resume={resume!r}` must be True (continue a checkpoint of this same fit), False "
            "(start fresh) or 'force' (continue the checkpointed run whatever it trained)."
        )
    given_data = data
    if isinstance(target, System):
        if has_aux:
            raise InputError("`has_aux` applies to a loss function, not to a System target.")
        loss_fn, data = _system_problem(target, data, loss)
        params = target.params if params is None else target.merge_params(params)
    elif callable(target):
        if loss is not None:
            raise InputError(
                "`loss=` is for System targets; when the target is a loss function it already "
                "is the loss."
            )
        if params is None:
            raise InputError("`params` is needed: the initial parameters of `loss`.")
        loss_fn, data = _user_problem(target, data, has_aux)
    else:
        raise InputError(
            f"`target` must be an odelab System or a loss function; got {type(target).__name__}."
        )
    optimizer = optimizer if optimizer is not None else optax.adam(1e-2)
    if not hasattr(optimizer, "update") or not hasattr(optimizer, "init"):
        raise InputError("`optimizer` must be an optax optimizer, e.g. optax.adam(1e-3).")
    n_data = None
    if batch_size is not None:
        if data is None:
            raise InputError("`batch_size` needs `data` to draw mini-batches from.")
        n_data = _data_size(data)
        if isinstance(batch_size, bool) or not 1 <= int(batch_size) <= n_data:
            raise InputError(f"`batch_size={batch_size!r}` must be between 1 and {n_data}.")
        batch_size = int(batch_size)

    # "auto" stays auto: each solve then picks for the route (and for nested gradients inside)
    plan, diff, static = make_plan("gradient", params, method, solver=solver, has_aux=True)
    rtol_a, atol_a = tolerances(rtol, atol)
    step_fn = _make_step(loss_fn, static, plan, optimizer)
    state = {"diff": diff, "opt_state": optimizer.init(diff), "best": diff}
    result = FitResult()
    result.target_steps = int(steps)
    path = fingerprint = None
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
        path = os.path.join(os.fspath(checkpoint_dir), CHECKPOINT_FILE)
        result.checkpoint_path = path
        data_seen = (target.data if given_data is None else given_data) \
            if isinstance(target, System) else data
        # the loss is traced on a batch of the size it is trained on (only shapes matter)
        batch = data if batch_size is None else jax.tree_util.tree_map(
            lambda x: np.asarray(x)[:batch_size], data)
        fingerprint = _fingerprint(
            loss_fn, static, diff, batch, data_seen, optimizer,
            dict(method=method, solver=solver, rtol=rtol, atol=atol, batch_size=batch_size,
                 has_aux=has_aux))
        if resume and os.path.exists(path):
            _load_checkpoint(path, state, result, seed, fingerprint, force=resume == "force")

    def batch_at(step: int) -> Any:
        if batch_size is None:
            return data
        idx = _batch_indices(n_data, batch_size, step, seed)
        return jax.tree_util.tree_map(lambda x: np.asarray(x)[idx], data)

    def save() -> None:
        if path is not None:
            _save_checkpoint(path, state, result, seed, fingerprint)

    bar = ProgressBar(int(steps), desc="fit", initial=result.steps) if progress else None
    name = getattr(target, "name", None) or getattr(target, "__name__", "fit")
    objective = None
    if not isinstance(target, System) and data is None and not has_aux:  # a loss(params)
        objective = target
        _events.emit(_events.OBJECTIVE, fun=target, params=params, name=name, source="fit")
    _events.emit(_events.FIT, result=result, done=False, name=f"fit: {name}", fun=objective)
    start = time.perf_counter()
    first = True  # the first step compiles the training step (the lab's status bar says so)
    try:
        while result.steps < steps:
            s = result.steps
            if first:
                _events.emit(_events.COMPILING, active=True, what=f"the training step of {name}")
            try:
                new_diff, new_opt, value, preds, status = step_fn(
                    state["diff"], state["opt_state"], batch_at(s), rtol_a, atol_a)
                value = float(value)
            finally:
                if first:
                    first = False
                    _events.emit(_events.COMPILING, active=False, what="")
            if int(status) != 0 or not np.isfinite(value):
                result.interrupted = True
                result.stop_reason = (
                    f"a solve failed at step {s}" if int(status) != 0 else
                    f"the loss became {value} at step {s}"
                ) + "; lower the learning rate, or check solver/rtol (the best parameters are kept)"
                break
            if value < result.best_loss:
                result.best_loss, result.best_step, state["best"] = value, s, state["diff"]
            result.losses.append(value)
            event_params = state["diff"]
            state["diff"], state["opt_state"] = new_diff, new_opt
            result.steps = s + 1
            if bar is not None:
                bar.update(1, loss=value)
            _events.emit(_events.FIT, result=result, done=False)
            if path is not None and result.steps % checkpoint_every == 0:
                save()
            if callback is not None and (s % callback_every == 0 or result.steps == steps):
                event = FitEvent(step=s, loss=value, params=eqx.combine(event_params, static),
                                 predictions=preds, result=result)
                _fill(result, state, static)
                if callback(event) is False:
                    result.interrupted, result.stop_reason = True, f"callback stopped at step {s}"
                    break
            if result._stop_requested:
                result.interrupted, result.stop_reason = True, f"stop() requested at step {s}"
                break
    except KeyboardInterrupt:
        result.interrupted = True
        result.stop_reason = f"KeyboardInterrupt at step {result.steps}"
    finally:
        if bar is not None:
            bar.close()
        result.seconds = time.perf_counter() - start
        _fill(result, state, static)
        save()
        _events.emit(_events.FIT, result=result, done=True)
    return result


def _fill(result: FitResult, state: dict[str, Any], static: Any) -> None:
    result.params = eqx.combine(state["diff"], static)
    result.best_params = eqx.combine(state["best"], static)
    result.opt_state = state["opt_state"]


# --------------------------------------------------------------------------------------------
# Newton–Krylov
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class NewtonResult:
    """The outcome of `ol.newton_krylov`: params, loss, gradient norm, counts and history."""

    params: Any
    loss: float
    grad_norm: float
    iterations: int
    hvps: int
    converged: bool
    message: str
    history: list[dict[str, float]]

    def __repr__(self) -> str:
        return (f"NewtonResult(loss={self.loss:.6g}, |g|={self.grad_norm:.3g}, "
                f"{self.iterations} iterations, {self.hvps} HVPs, converged={self.converged})")


def _steihaug(g: np.ndarray, hvp: Callable, radius: float, tol: float, maxiter: int):
    """Truncated CG for min g·p + ½pᵀHp within |p| ≤ radius: (p, Hp, HVPs, hit the boundary)."""
    z = np.zeros_like(g)
    hz = np.zeros_like(g)
    r, d = g.copy(), -g
    used = 0

    def to_boundary(z, d):
        # the positive root of |z + τ d| = radius
        a, b, c = d @ d, 2 * z @ d, z @ z - radius**2
        return (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)

    for _ in range(maxiter):
        bd = hvp(d)
        used += 1
        curvature = d @ bd
        if curvature <= 0:  # negative curvature: go to the trust-region edge along d
            tau = to_boundary(z, d)
            return z + tau * d, hz + tau * bd, used, True
        alpha = (r @ r) / curvature
        if np.linalg.norm(z + alpha * d) >= radius:
            tau = to_boundary(z, d)
            return z + tau * d, hz + tau * bd, used, True
        z, hz = z + alpha * d, hz + alpha * bd
        r_next = r + alpha * bd
        if np.linalg.norm(r_next) <= tol:
            return z, hz, used, False
        d = -r_next + (r_next @ r_next) / (r @ r) * d
        r = r_next
    return z, hz, used, False


def newton_krylov(fun: Callable, params: Any, *, maxiter: int = 30, gtol: float = 1e-8,
                  method: Any = "auto", solver: Any = None, rtol: Any = None, atol: Any = None,
                  radius: float = 1.0, max_radius: float = 1e3, cg_maxiter: int | None = None,
                  callback: Callable[[dict[str, float]], Any] | None = None) -> NewtonResult:
    """Minimise `fun(params)` by Hessian-free Newton: trust-region Newton–CG (Steihaug) on HVPs.

    Each iteration takes one gradient and a few Hessian-vector products (`ol.hvp`, never the
    Hessian itself), solves the Newton system by conjugate gradients truncated at the trust
    region, and grows or shrinks the region by how well the quadratic model predicted the
    decrease. Near a minimum convergence is superlinear: parameter estimation from good data
    typically converges in a handful of iterations.

    gtol: stop when the gradient's max-norm falls below it. radius: the initial trust radius
    (in parameter units). method, solver, rtol, atol: as for `ol.hvp` (second order).

        >>> out = ol.newton_krylov(lambda p: jnp.sum((ol.solve(sys, params=p).ys - ys) ** 2), p0)
        >>> out.params, out.iterations
    """

    diff, static = split_params(params)
    flat, unravel = ravel_pytree(diff)
    x = np.asarray(flat, dtype=np.float64)
    cg_maxiter = cg_maxiter or max(10, 2 * x.size)
    opts = dict(method=method, solver=solver, rtol=rtol, atol=atol)

    def evaluate(v):
        value, g = value_and_gradient(fun, eqx.combine(unravel(jnp.asarray(v)), static), **opts)
        g_diff, _ = eqx.partition(g, eqx.is_inexact_array)
        return float(value), np.asarray(ravel_pytree(g_diff)[0])

    def hessian_times(v, at):
        out = hvp(fun, eqx.combine(unravel(jnp.asarray(at)), static), unravel(jnp.asarray(v)),
                  **opts)
        return np.asarray(ravel_pytree(eqx.partition(out, eqx.is_inexact_array)[0])[0])

    value, g = evaluate(x)
    history = [dict(iteration=0, loss=value, grad_norm=float(np.max(np.abs(g))), radius=radius)]
    hvps, converged, message = 0, False, f"reached maxiter={maxiter}"
    iteration = 0
    for iteration in range(1, maxiter + 1):
        gnorm = float(np.linalg.norm(g))
        if np.max(np.abs(g)) <= gtol:
            converged, message = True, f"gradient below gtol={gtol:g}"
            iteration -= 1
            break
        forcing = min(0.5, np.sqrt(gnorm)) * gnorm  # superlinear convergence near the minimum
        p, hp, used, boundary = _steihaug(g, lambda v, at=x: hessian_times(v, at), radius,
                                          forcing, cg_maxiter)
        hvps += used
        predicted = -(g @ p + 0.5 * p @ hp)
        new_value, new_g = evaluate(x + p)
        actual = value - new_value
        ratio = actual / predicted if predicted > 0 else -1.0
        if ratio < 0.25:
            radius *= 0.25
        elif ratio > 0.75 and boundary:
            radius = min(2 * radius, max_radius)
        if ratio > 1e-4 and np.isfinite(new_value):
            x, value, g = x + p, new_value, new_g
        record = dict(iteration=iteration, loss=value, grad_norm=float(np.max(np.abs(g))),
                      radius=radius, ratio=float(ratio), cg_steps=used)
        history.append(record)
        if callback is not None and callback(record) is False:
            message = "stopped by the callback"
            break
        if radius < 1e-14 * max(1.0, np.linalg.norm(x)):
            message = "the trust region collapsed: the loss may be non-smooth or noisy there"
            break
    else:
        if np.max(np.abs(g)) <= gtol:
            converged, message = True, f"gradient below gtol={gtol:g}"
    if not np.isfinite(value):
        raise SolveError("newton_krylov: the loss is not finite at the starting parameters.")
    return NewtonResult(
        params=eqx.combine(unravel(jnp.asarray(x)), static), loss=value,
        grad_norm=float(np.max(np.abs(g))), iterations=iteration, hvps=hvps, converged=converged,
        message=message, history=history,
    )

