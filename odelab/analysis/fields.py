"""Batched evaluations over many points: gradient fields, ensembles, and device sharding.

Every batch here is one `jax.vmap` (never a Python loop over points), cut into equal chunks so
memory stays bounded and one compiled program serves every chunk, and each chunk is sharded over
all devices along its batch axis (a 1-D `jax.sharding.Mesh` of `jax.devices()`). The same code
runs on one CPU, one GPU or several devices.

More than one process (several hosts, or several processes on one machine): call
`odelab.distributed.initialize` in every process before anything else runs JAX; then
`jax.devices()` lists the devices of every process, the mesh spans them, each process computes
its share of every chunk, and every process gets the whole result back. Each process runs the same
script and must call the same functions with the same arguments in the same order (a batch that
differs between processes is refused with an `InputError`). `python -m odelab.distributed`
launches such a script on one machine and checks a setup end to end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._errors import InputError, SolveError, closest
from .._inputs import as_params, check_params_finite, finite_array
from .._progress import ProgressBar
from ..derivatives import value_and_gradient
from ..solve import choose_solver, current, record, recording, solve
from ..system import System
from .layouts import choose_layout, member_params, solve_shared

BATCH_AXIS = "batch"
DEFAULT_CHUNK = 1024  # points per compiled call; bounds device memory for big grids


# --------------------------------------------------------------------------------------------
# sharding helpers (used here and by `_spectra` for batches of Hessian-vector products)
# --------------------------------------------------------------------------------------------
def device_mesh(devices: Any = None) -> Mesh:
    """A 1-D mesh over `devices` (default: every device JAX sees, on every host)."""
    devs = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devs), (BATCH_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split across the mesh; other axes whole on each device."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXIS))


def padded_size(n: int, multiple: int) -> int:
    """`n` rounded up to a multiple of `multiple`."""
    return int(math.ceil(n / multiple) * multiple)


def pad_batch(tree: Any, size: int) -> Any:
    """Pad the leading axis of every array leaf to `size` by repeating the last member.

    Repeating a real member (rather than zeros) keeps the padding numerically harmless: a solve
    at zero parameters might fail or be slow, a copy of a real one is neither.
    """

    def pad(x):
        x = jnp.asarray(x)
        extra = size - x.shape[0]
        if extra == 0:
            return x
        return jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)], axis=0)

    return jax.tree_util.tree_map(pad, tree)


def shard_batch(tree: Any, mesh: Mesh) -> Any:
    """Place `tree` (leading axis a multiple of the device count) split over the mesh."""
    sharding = batch_sharding(mesh)
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding), tree)


def to_host(tree: Any) -> Any:
    """Every array leaf of `tree` as a numpy array, fetched whole even when it is spread over
    several processes (each process then receives every other process's shards)."""

    def fetch(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(x)
        if x.is_fully_replicated:  # every process holds all of it already
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree_util.tree_map(fetch, tree)


def check_same_in_every_process(tree: Any, what: str) -> None:
    """Refuse a batch that differs between processes (one fingerprint per process is exchanged).

    Each process places its own copy of the batch; were the copies to differ, every process
    would silently compute on a mixture of them.
    """
    if jax.process_count() == 1:
        return
    digest = hashlib.blake2b(digest_size=16)
    for leaf in jax.tree_util.tree_leaves(tree):
        a = np.ascontiguousarray(np.asarray(leaf))
        digest.update(str((a.shape, a.dtype.str)).encode())
        digest.update(a.tobytes())
    mine = np.frombuffer(digest.digest(), dtype=np.int32)
    every = np.asarray(multihost_utils.process_allgather(mine)).reshape(jax.process_count(), -1)
    differ = [i for i in range(every.shape[0]) if not np.array_equal(every[i], every[0])]
    if differ:
        raise InputError(
            f"The inputs of this {what} differ between processes (process {differ[0]} has other "
            "values than process 0). Every process must call odelab with the same arguments: "
            "build them the same way in each (same data, same seeds), not from the process index."
        )


def _batch_size(tree: Any, argument: str) -> int:
    sizes = {int(np.shape(x)[0]) for x in jax.tree_util.tree_leaves(tree) if np.ndim(x) > 0}
    if not sizes:
        raise InputError(f"`{argument}` has no arrays with a leading batch axis.")
    if len(sizes) > 1:
        raise InputError(
            f"`{argument}` has leading (batch) axes of different lengths {sorted(sizes)}; every "
            "batched entry needs the same number of members."
        )
    return sizes.pop()


def vmap_solves(fn: Callable[[Any], Any], xs: Any) -> Any:
    """`jax.vmap(fn)(xs)` for an `fn` that calls `ol.solve`, passing the solves' statuses on.

    Solves report their status to the enclosing derivative call; under vmap that status is
    batched, so it is collected inside and handed on as one (worst) status after the vmap.
    """

    def one(x):
        with recording() as rec:
            out = fn(x)
        codes = [jnp.asarray(c) for c, _ in rec.entries]
        times = [jnp.asarray(t) for _, t in rec.entries]
        status = jnp.max(jnp.stack(codes)) if codes else jnp.asarray(0)
        reached = jnp.min(jnp.stack(times)) if times else jnp.asarray(jnp.inf)
        return out, status, reached

    out, status, reached = jax.vmap(one)(xs)
    record(jnp.max(status), jnp.min(reached))
    return out


def map_batched(run: Callable[[Any], Any], batch: Any, *, chunk_size: int | None = None,
                progress: Any = None, desc: str = "batch") -> Any:
    """Apply a jitted, vmapped `run(chunk)` to `batch` in equal sharded chunks; numpy outputs.

    `run` must map a pytree with a leading batch axis to outputs with the same leading axis. Chunks
    are padded to a common size (a multiple of the device count), so `run` compiles once. With
    several processes every process passes the same `batch` and receives the whole output.
    `progress` is None/False (silent), True (a progress bar) or a callable(done, total).
    """
    n = _batch_size(batch, "batch")
    check_same_in_every_process(batch, desc)
    mesh = device_mesh()
    n_dev = mesh.devices.size
    chunk = padded_size(min(n, chunk_size or DEFAULT_CHUNK), n_dev)
    total = padded_size(n, chunk)
    padded = pad_batch(batch, total)
    report = _progress_reporter(progress, n, desc)
    pieces = []
    try:
        for start in range(0, total, chunk):
            part = jax.tree_util.tree_map(lambda x, s=start: x[s:s + chunk], padded)
            out = run(shard_batch(part, mesh))
            # to host as we go: device memory holds one chunk at a time
            pieces.append(to_host(out))
            report(min(start + chunk, n))
    finally:
        report(None)
    joined = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0), *pieces)
    return jax.tree_util.tree_map(lambda x: x[:n], joined)


def _progress_reporter(progress: Any, total: int, desc: str) -> Callable[[int | None], None]:
    """A function called with points done so far (None at the end)."""
    if progress is None or progress is False:
        return lambda done: None
    if callable(progress) and progress is not True:
        return lambda done: None if done is None else progress(done, total)

    bar = ProgressBar(total, desc=desc)
    last = [0]

    def update(done):
        if done is None:
            bar.close()
            return
        bar.update(done - last[0])
        last[0] = done

    return update


# --------------------------------------------------------------------------------------------
# gradient fields
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class GradientField:
    """Loss and its gradient over a 2-D grid of two parameters (the others held fixed).

    `X`, `Y`, `loss`, `dloss_dx`, `dloss_dy` are (n, n) arrays with rows along y and columns along
    x (as `numpy.meshgrid` and image plots expect). `failed` marks grid points whose solves failed
    (their values are NaN). `to_dict()` gives plain lists for JSON and plotting libraries.
    """

    x_name: str
    y_name: str
    x: np.ndarray
    y: np.ndarray
    loss: np.ndarray
    dloss_dx: np.ndarray
    dloss_dy: np.ndarray
    log_x: bool = False
    log_y: bool = False
    failed: np.ndarray | None = None
    seconds: float = 0.0

    @property
    def X(self) -> np.ndarray:  # noqa: N802  (the conventional name of a meshgrid)
        return np.meshgrid(self.x, self.y)[0]

    @property
    def Y(self) -> np.ndarray:  # noqa: N802
        return np.meshgrid(self.x, self.y)[1]

    @property
    def minimum(self) -> dict[str, float]:
        """The grid point with the lowest loss: {x_name: ..., y_name: ..., "loss": ...}."""
        i, j = np.unravel_index(np.nanargmin(self.loss), self.loss.shape)
        return {self.x_name: float(self.x[j]), self.y_name: float(self.y[i]),
                "loss": float(self.loss[i, j])}

    def log_gradient(self) -> tuple[np.ndarray, np.ndarray]:
        """The gradient per unit of the plotted axes (d/dlog10 on log axes, else d/dx)."""
        gx = self.dloss_dx * self.X * np.log(10.0) if self.log_x else self.dloss_dx
        gy = self.dloss_dy * self.Y * np.log(10.0) if self.log_y else self.dloss_dy
        return gx, gy

    def to_dict(self) -> dict[str, Any]:
        def clean(a):
            return np.where(np.isfinite(a), a, np.nan).tolist()

        return {
            "x_name": self.x_name, "y_name": self.y_name, "x": self.x.tolist(),
            "y": self.y.tolist(), "loss": clean(self.loss), "dloss_dx": clean(self.dloss_dx),
            "dloss_dy": clean(self.dloss_dy), "log_x": self.log_x, "log_y": self.log_y,
        }

    def __repr__(self) -> str:
        return (
            f"GradientField({self.x_name} × {self.y_name}, {self.x.size}×{self.y.size} points, "
            f"{self.seconds:.2f} s)"
        )

    def _repr_html_(self) -> str:
        best = self.minimum
        n_failed = int(np.sum(self.failed)) if self.failed is not None else 0
        scale = lambda log: "log" if log else "linear"  # noqa: E731
        rows = [
            (self.x_name, f"{self.x[0]:.4g} … {self.x[-1]:.4g} ({scale(self.log_x)})"),
            (self.y_name, f"{self.y[0]:.4g} … {self.y[-1]:.4g} ({scale(self.log_y)})"),
            ("lowest loss", f"{best['loss']:.6g} at {self.x_name}={best[self.x_name]:.4g}, "
                            f"{self.y_name}={best[self.y_name]:.4g}"),
            ("failed points", str(n_failed)),
            ("time", f"{self.seconds:.2f} s"),
        ]
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        return (f"<div><b>GradientField</b> {self.x.size}×{self.y.size}<table>{body}</table>"
                "</div>")


def _axis(argument: str, spec: Any, params: Mapping[str, Any], n: int, log: Any):
    try:
        name, lo, hi = spec
    except (TypeError, ValueError):
        raise InputError(
            f"`{argument}` must be a triple (name, lo, hi), e.g. {argument}=('a', 0.1, 10)."
        ) from None
    if name not in params:
        raise InputError(
            f"`{argument}` names {name!r}, which is not in `params`.{closest(name, params)} "
            f"Parameters: {', '.join(map(str, params))}."
        )
    if np.ndim(params[name]) != 0:
        raise InputError(f"`{argument}` names {name!r}, which is not a scalar parameter.")
    lo, hi = float(lo), float(hi)
    if not lo < hi:
        raise InputError(f"`{argument}=({name!r}, {lo}, {hi})`: lo must be below hi.")
    if log is None:  # a wide positive range reads better on a log axis
        log = lo > 0 and hi / lo >= 20
    if log and lo <= 0:
        raise InputError(
            f"`{argument}=({name!r}, {lo}, {hi})` asks for a log axis over a non-positive range; "
            "give lo > 0 or log=False."
        )
    grid = np.geomspace(lo, hi, n) if log else np.linspace(lo, hi, n)
    return name, grid, bool(log)


def _field_point(fun, params, x_name, y_name, method, solver, rtol, atol, point):
    """(loss, dloss/dx, dloss/dy, worst solve status) at one grid point, traced under vmap."""

    def restricted(q):
        p = dict(params)
        p[x_name], p[y_name] = q[0], q[1]
        return fun(p)

    with recording() as rec:
        value, g = value_and_gradient(restricted, point, method, solver=solver, rtol=rtol,
                                      atol=atol)
    codes = [jnp.asarray(c) for c, _ in rec.entries]
    status = jnp.max(jnp.stack(codes)) if codes else jnp.asarray(0)
    return value, g[0], g[1], status


@eqx.filter_jit
def _field_chunk(fun, params, x_name, y_name, method, solver, rtol, atol, points):
    one = lambda pt: _field_point(fun, params, x_name, y_name, method, solver, rtol, atol, pt)  # noqa: E731
    return jax.vmap(one)(points)


def gradient_field(fun: Callable, params: Mapping[str, Any], x: tuple, y: tuple, n: int = 32, *,
                   log: Any = None, method: Any = "auto", solver: Any = None, rtol: Any = None,
                   atol: Any = None, chunk_size: int | None = None,
                   progress: Any = None) -> GradientField:
    """The loss `fun(params)` and its gradient on an n×n grid of two parameters.

    x, y: (name, lo, hi) of the two parameters to vary; the others keep their values in `params`.
    log: True/False for both axes or a pair (log_x, log_y); None puts wide positive ranges
      (hi/lo ≥ 20) on a log axis.
    method, solver, rtol, atol: as for `ol.gradient`, applied to every solve inside `fun`.
    chunk_size: grid points per compiled call (bounds memory); progress: True for a progress
      bar or a callable(done, total) called after each chunk.

    All points of a chunk run in one vmapped program, split across every device (see the module
    docstring for multi-device and multi-host use); new parameter values never recompile.

        >>> field = ol.gradient_field(loss, sys.params, x=("alpha", 0.5, 3), y=("beta", 0.2, 2))
        >>> field.loss.shape, field.minimum
    """
    if not callable(fun):
        raise InputError(f"`fun` must be a function of the parameters; got {type(fun).__name__}.")
    if not isinstance(params, Mapping):
        raise InputError(
            "`params` must be a dict of named parameters for a gradient field (the axes name "
            f"two of them); got {type(params).__name__}."
        )
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise InputError(f"`n={n!r}` must be a whole number of grid points per axis, at least 2.")
    log_x, log_y = (log, log) if not isinstance(log, (tuple, list)) else log
    x_name, xs, log_x = _axis("x", x, params, n, log_x)
    y_name, ys, log_y = _axis("y", y, params, n, log_y)
    if x_name == y_name:
        raise InputError(f"`x` and `y` both name {x_name!r}; choose two different parameters.")
    params = as_params(dict(params))
    X, Y = np.meshgrid(xs, ys)
    points = jnp.asarray(np.stack([X.ravel(), Y.ravel()], axis=1))
    r = None if rtol is None else jnp.asarray(float(rtol))
    a = None if atol is None else jnp.asarray(float(atol))
    start = time.perf_counter()
    loss, gx, gy, status = map_batched(
        lambda pts: _field_chunk(fun, params, x_name, y_name, method, solver, r, a, pts),
        points, chunk_size=chunk_size, progress=progress, desc="gradient field",
    )
    failed = (status != 0) | ~np.isfinite(loss)
    shape = (ys.size, xs.size)
    nan = lambda v: np.where(failed, np.nan, v).reshape(shape)  # noqa: E731
    return GradientField(
        x_name=x_name, y_name=y_name, x=xs, y=ys, loss=nan(loss), dloss_dx=nan(gx),
        dloss_dy=nan(gy), log_x=log_x, log_y=log_y, failed=failed.reshape(shape),
        seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------------------------
# ensembles
# --------------------------------------------------------------------------------------------
def _ensemble_members(system, settings, shared, layout, member, traced=False):
    """The members of `member` (a chunk, or the whole batch inside a transform) in `layout`."""
    if layout == "shared":
        members = _batch_size(member, "batch")
        y0s = member.get("y0")
        if y0s is None:
            y0s = jnp.broadcast_to(jnp.asarray(system.y0), (members, len(system.states)))
        out = solve_shared(system, y0s, shared, member.get("params", {}), members, settings)
    else:
        def one(m):
            p = shared if "params" not in m else member_params(shared, m["params"])
            return solve(system, y0=m.get("y0"), params=p, **settings)

        if traced:  # the enclosing derivative call collects the statuses
            out = vmap_solves(one, member)
        else:
            with recording():  # statuses are on each member's Solution already
                out = vmap_solves(one, member)
    return dataclasses.replace(out, layout=layout)


# One program per chunk shape. Only for concrete batches: inside a transform, the solves read
# the derivative call's traced tolerances from the context, which a cached program would keep.
_ensemble_chunk = eqx.filter_jit(_ensemble_members)


def _tolerance(value: Any) -> Any:
    return value if isinstance(value, jax.core.Tracer) else jnp.asarray(float(value))


def _is_traced(*trees: Any) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(trees))


def _batched_params(system: System, params_batch: Any, traced: bool) -> Any:
    if isinstance(system.params, Mapping) and isinstance(params_batch, Mapping):
        unknown = [k for k in params_batch if k not in system.params]
        if unknown:
            raise InputError(
                f"`params_batch` names {unknown[0]!r}, which system {system.name!r} does not have."
                f"{closest(unknown[0], system.params)}"
            )
        if traced:
            return {k: jnp.asarray(v, dtype=jnp.result_type(float))
                    for k, v in params_batch.items()}
        return {k: jnp.asarray(finite_array(f"params_batch[{k!r}]", v),
                               dtype=jnp.result_type(float)) for k, v in params_batch.items()}
    params_batch = as_params(params_batch)
    if not traced:
        check_params_finite(params_batch, "params_batch")
    return params_batch


def _shared_params(system: System, params: Any, traced: bool) -> Any:
    """The parameters every member uses: the system's, updated by `params` when given."""
    if params is None:
        return system.params
    if isinstance(system.params, Mapping) and isinstance(params, Mapping):
        unknown = [k for k in params if k not in system.params]
        if unknown:
            raise InputError(
                f"`params` names {unknown[0]!r}, which system {system.name!r} does not have."
                f"{closest(unknown[0], system.params)}")
        params = {**system.params, **params}
    params = as_params(params)
    if not traced:
        check_params_finite(params, "params")
    return params


def solve_ensemble(system: System, params_batch: Any = None, y0_batch: Any = None, *,
                   params: Any = None, layout: str = "auto",
                   t_span: Any = None, saveat: Any = None, solver: Any = None, rtol: Any = None,
                   atol: Any = None, max_steps: int | None = None, method: Any = None,
                   chunk_size: int | None = None, progress: Any = None,
                   throw: bool = True):
    """Solve `system` for a batch of parameter sets and/or initial states in one program.

    params_batch: for dict parameters, a dict of arrays with a leading batch axis naming only the
      parameters that vary (``{"alpha": np.linspace(1, 2, 100)}``); otherwise a pytree shaped like
      `system.params` with a leading batch axis on every array.
    y0_batch: an array (batch, n_states) of initial states.
    params: the parameters every member shares (default: the system's; for dict parameters, the
      entries given replace the system's). Differentiate through them, e.g. a neural ODE's
      network over a batch of initial states:
      ``ol.gradient(lambda net: loss(ol.solve_ensemble(node, y0_batch=y0s, params=net).ys), net)``.
    layout: "shared" integrates the members stacked into one state with one step size (each
      member's error still held to the tolerances), "per-member" vmaps the solve (each member its
      own steps), "auto" (default) takes "shared" for explicit solvers on one device and
      "per-member" for implicit solvers or several devices; `sols.layout` says which ran
      (odelab/analysis/layouts.py explains the choice).
    The other arguments are those of `ol.solve`. Returns one `Solution` whose arrays carry the
    batch as their leading axis (`sols.ys[i]` is member i's trajectory). The batch is split across
    all devices (see the module docstring); `throw=False` returns failed members instead of
    raising (check `sols.result != 0`). Inside `ol.gradient`, `jax.jit` or another transform the
    batch runs as one program (no chunks, no progress) and the result stays differentiable.

        >>> sols = ol.solve_ensemble(sys, params_batch={"rho": np.linspace(20, 30, 64)})
        >>> sols.ys.shape   # (64, 201, 3)
    """
    if not isinstance(system, System):
        raise InputError(f"`system` must be an odelab System; got {type(system).__name__}.")
    if params_batch is None and y0_batch is None:
        raise InputError("Give `params_batch` and/or `y0_batch`: what varies across the ensemble.")
    if isinstance(saveat, str):
        raise InputError("`saveat='dense'` is not available for ensembles; give a count or times.")
    traced = _is_traced(params_batch, y0_batch, params)
    member: dict[str, Any] = {}
    if params_batch is not None:
        member["params"] = _batched_params(system, params_batch, traced)
    if y0_batch is not None:
        if traced:
            y0s = jnp.asarray(y0_batch, dtype=jnp.result_type(float))
        else:
            y0s = jnp.asarray(finite_array("y0_batch", y0_batch), dtype=jnp.result_type(float))
        if y0s.ndim != 2 or y0s.shape[1] != len(system.states):
            raise InputError(
                f"`y0_batch` has shape {y0s.shape}; expected (batch, {len(system.states)}) for "
                f"states {', '.join(system.states)}."
            )
        member["y0"] = y0s
    _batch_size(member, "params_batch and y0_batch")
    shared = _shared_params(system, params, traced)
    defaults = current()
    if (solver or defaults.solver or "auto") == "auto":
        # choose once, on the host, from the system's defaults: members share one program
        solver, _ = choose_solver(system, system.y0, system.params, t_span or system.t_span)
    solver = solver or defaults.solver
    layout, _ = choose_layout(layout, solver, 1 if traced else device_mesh().devices.size)
    # the defaults in force, resolved here: the chunk program must not bake in the context's
    rtol = rtol if rtol is not None else defaults.rtol
    atol = atol if atol is not None else defaults.atol
    method = method if method is not None else defaults.method
    max_steps = max_steps if max_steps is not None else defaults.max_steps
    # tolerances as arrays: new values must not recompile
    settings = dict(t_span=t_span, saveat=saveat, solver=solver,
                    rtol=None if rtol is None else _tolerance(rtol),
                    atol=None if atol is None else _tolerance(atol),
                    max_steps=max_steps, method=method)
    if traced:
        return _ensemble_members(system, settings, shared, layout, member, traced=True)
    out = map_batched(lambda m: _ensemble_chunk(system, settings, shared, layout, m), member,
                      chunk_size=chunk_size, progress=progress, desc="ensemble")
    sols = jax.tree_util.tree_map(jnp.asarray, out)
    failed = np.flatnonzero(np.asarray(sols.result) != 0)
    if throw and failed.size:
        raise SolveError(
            f"{failed.size} of {np.shape(sols.result)[0]} ensemble members failed (first: member "
            f"{failed[0]}, stopped at t={float(sols.t_reached[failed[0]]):g}). Solve that member "
            "alone with ol.solve to see why, or pass throw=False and inspect `sols.result`."
        )
    return sols
