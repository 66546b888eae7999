"""Argument checks and coercion, in one place: every public function checks its inputs here.

Each check either returns the value in the form the computation wants (float arrays of the right
dtype, plain floats, validated names) or raises an `InputError` that names the argument and says
what to give instead. Traced values (inside jax.jit, grad, vmap) pass through the checks that
need concrete numbers.
"""

from __future__ import annotations

import functools
import inspect
import keyword
import math
import os
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._errors import InputError


def float_dtype() -> Any:
    """The floating-point dtype odelab computes in (float64 unless ODELAB_FLOAT64=0)."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def is_traced(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


def is_concrete(*trees: Any) -> bool:
    """Whether no leaf of `trees` is traced (all values are known now)."""
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(trees))


def check_identifier(argument: str, name: Any) -> str:
    """`name` if it is a valid Python identifier (state and parameter names), else InputError."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise InputError(
            f"`{argument}` contains {name!r}, which is not a valid name. Use names like 'x', "
            "'v_m' or 'prey' (letters, digits and underscores, not starting with a digit)."
        )
    return name


def float_array(argument: str, value: Any, *, allow_int: bool = True) -> np.ndarray:
    """`value` as a float64 numpy array, or an InputError that says what was wrong."""
    if isinstance(value, jax.core.Tracer):
        raise InputError(f"`{argument}` is traced here; this check needs a concrete value.")
    try:
        arr = np.asarray(value)
    except Exception as err:  # ragged lists, objects
        raise InputError(
            f"`{argument}` could not be read as an array of numbers ({err})."
        ) from None
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating)
        or np.issubdtype(arr.dtype, np.integer)
        or arr.dtype == np.bool_
    ):
        raise InputError(f"`{argument}` must be numbers; got {arr.dtype} values {value!r:.80}.")
    if np.iscomplexobj(arr):
        raise InputError(f"`{argument}` must be real numbers; got complex values.")
    if not allow_int and not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"`{argument}` must be floating point; got {arr.dtype}.")
    return arr.astype(np.float64)


def check_finite(argument: str, arr: np.ndarray) -> None:
    """InputError naming the first NaN or inf in `arr`, if any."""
    if not np.all(np.isfinite(arr)):
        where = np.argwhere(~np.isfinite(arr))
        idx = tuple(int(i) for i in where[0]) if arr.ndim else ()
        raise InputError(
            f"`{argument}` contains a non-finite value ({arr[idx] if idx else arr}) at index "
            f"{idx if idx else '()'}. Give finite numbers."
        )


def finite_array(argument: str, value: Any) -> np.ndarray:
    """`value` as a float64 array with every entry finite."""
    arr = float_array(argument, value)
    check_finite(argument, arr)
    return arr


def scalar(argument: str, value: Any) -> Any:
    """A checked finite scalar: a Python float, or the tracer as it is inside a transform."""
    if isinstance(value, jax.core.Tracer):
        if value.shape != ():
            raise InputError(f"`{argument}` must be a single number; got shape {value.shape}.")
        return value
    if type(value) in (float, int):  # the common case, fast
        value = float(value)
        if not math.isfinite(value):
            raise InputError(f"`{argument}={value}` is not finite; give a finite number.")
        return value
    if isinstance(value, bool):
        raise InputError(f"`{argument}` is a bool; give a number.")
    arr = float_array(argument, value)
    if arr.ndim != 0:
        raise InputError(f"`{argument}` must be a single number; got shape {arr.shape}.")
    if not np.isfinite(arr):
        raise InputError(f"`{argument}={float(arr)}` is not finite; give a finite number.")
    return float(arr)


def traced(value: Any) -> Any:
    """A float as a (non-weak) array input, so new values reuse the compiled program.

    Concrete values become numpy arrays: handing those to the compiled program costs no JAX
    dispatch, which keeps a solve's Python overhead small.
    """
    if isinstance(value, jax.core.Tracer):
        return jnp.asarray(value, dtype=float_dtype())
    return np.asarray(value, dtype=float_dtype())


TOLERANCE_EXAMPLES = {"rtol": "1e-6", "atol": "1e-8"}


def check_tolerance(argument: str, value: Any) -> Any:
    """A positive tolerance (Python float, or a tracer passed through unchecked)."""
    v = scalar(argument, value)
    if isinstance(v, jax.core.Tracer):
        return v
    if v <= 0:
        raise InputError(
            f"`{argument}={value!r}` must be a positive number, e.g. {argument}="
            f"{TOLERANCE_EXAMPLES.get(argument, '1e-6')}."
        )
    if argument == "rtol" and v >= 1:
        raise InputError(
            f"`rtol={value!r}` asks for no accuracy at all; relative tolerances are small "
            "numbers such as 1e-6."
        )
    if argument == "rtol" and v < 1e-15 and jax.config.jax_enable_x64:
        raise InputError(
            f"`rtol={value!r}` is below float64 resolution; the solver cannot meet it. "
            "Use 1e-14 or larger."
        )
    return v


def check_count(argument: str, value: Any, *, default: int | None = None,
                example: int | None = None) -> int | None:
    """A positive whole number (`default` when None is given)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        hint = f", e.g. {argument}={example}" if example is not None else ""
        raise InputError(f"`{argument}={value!r}` must be a positive whole number{hint}.")
    return int(value)


def as_params(params: Any, host: bool = False) -> Any:
    """Parameters with Python and numpy scalars turned into float arrays (traced, not static).

    host=True makes them numpy arrays, for parameters going straight into a compiled program:
    a jnp.asarray per scalar would dispatch a JAX operation each (about 0.1 ms apiece).
    """
    to_array = np.asarray if host else jnp.asarray
    dtype = float_dtype()

    def leaf(x):
        if isinstance(x, (float, int, np.floating, np.integer)) and not isinstance(x, bool):
            return to_array(x, dtype=dtype)
        if isinstance(x, np.ndarray) and x.dtype.kind in "fiu":
            return to_array(x, dtype=dtype)
        if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
            # weak-typed, integer or other-precision arrays would each compile a new program
            if jnp.issubdtype(x.dtype, jnp.integer) or x.weak_type:  # scalars, usually
                return to_array(np.asarray(x, dtype=dtype))
            if jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != dtype:
                return x.astype(dtype)
        return x

    return jax.tree_util.tree_map(leaf, params)


def check_param_leaves(params: Any, argument: str = "params") -> None:
    """InputError naming the first leaf of `params` that cannot be a parameter value.

    Differentiated values are numbers and numeric arrays; an equinox module's functions (its
    activation, say) may sit among them and are kept as they are, and so may a None field of a
    module (an `eqx.nn.Linear` without bias; the non-array parts of `eqx.filter(model,
    eqx.is_array)`), which JAX treats as an empty subtree. A bool, a string, a None entry of a dict
    or list, or any other object would reach the user's function unchanged and come back as its
    own "gradient", so it is refused here with its place in the pytree.
    """
    leaves = jax.tree_util.tree_leaves_with_path(params, is_leaf=lambda x: x is None)
    for path, leaf in leaves:
        if leaf is None and path and isinstance(path[-1], jax.tree_util.GetAttrKey):
            continue  # a module's empty field
        where = f"`{argument}{jax.tree_util.keystr(path)}`"
        dtype = getattr(leaf, "dtype", None)
        if isinstance(leaf, (bool, np.bool_)) or (dtype is not None and dtype == np.bool_):
            raise InputError(f"{where} is a bool ({leaf!r:.40}); parameter values are numbers "
                             "(1.0 for True) or float arrays.")
        if isinstance(leaf, (int, float, np.number)) or callable(leaf):
            continue
        if dtype is None or not (jnp.issubdtype(dtype, jnp.number)
                                 or jnp.issubdtype(dtype, jax.dtypes.prng_key)):
            what = "None" if leaf is None else f"{type(leaf).__name__} {leaf!r:.40}"
            raise InputError(f"{where} is {what}, not a number; parameter values are numbers or "
                             "numeric arrays (remove the entry, or give its value).")


def check_params_finite(params: Any, argument: str = "params") -> None:
    """InputError naming the first parameter leaf holding a NaN or inf (concrete leaves only)."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if isinstance(leaf, jax.core.Tracer) or not hasattr(leaf, "dtype"):
            continue
        if jnp.issubdtype(leaf.dtype, jnp.floating) and not np.all(np.isfinite(np.asarray(leaf))):
            where = jax.tree_util.keystr(path)
            raise InputError(
                f"`{argument}{where}` contains a non-finite value (NaN or inf). Give finite "
                "numbers."
            )


def check_param_value(argument: str, value: Any, like: Any) -> Any:
    """Check a new value for one parameter against its default `like` (shape, finiteness)."""
    if type(value) in (float, int) and type(like) in (float, int):  # the common case, fast
        if not math.isfinite(value):
            raise InputError(f"`{argument}` contains a non-finite value ({value}). Give finite "
                             "numbers.")
        return value
    if isinstance(value, jax.core.Tracer) or isinstance(value, eqx.Module):
        return value
    if isinstance(value, bool):
        raise InputError(f"`{argument}` is a bool; parameters must be numbers.")
    if isinstance(like, (int, float)) or np.ndim(like) == 0:
        arr = float_array(argument, value)
        if arr.ndim != 0:
            raise InputError(f"`{argument}` must be a single number; got shape {arr.shape}.")
        check_finite(argument, arr)
        return value
    if hasattr(like, "shape"):
        arr = float_array(argument, value)
        if arr.shape != like.shape:
            raise InputError(f"`{argument}` has shape {arr.shape}; expected {like.shape}.")
        check_finite(argument, arr)
    return value


def check_t_span(t_span: Any) -> tuple[Any, Any]:
    """`t_span` as a pair (t0, t1) with t0 < t1, both finite."""
    try:
        t0, t1 = t_span
    except (TypeError, ValueError):
        raise InputError(
            f"`t_span` must be a pair (t0, t1); got {t_span!r}. Example: t_span=(0.0, 10.0)."
        ) from None
    if isinstance(t0, jax.core.Tracer) or isinstance(t1, jax.core.Tracer):
        return t0, t1
    plain = type(t0) in (float, int) and type(t1) in (float, int)  # the common case, fast
    for label, v in () if plain else (("t0", t0), ("t1", t1)):
        if isinstance(v, bool):
            raise InputError(f"`t_span` {label} is a bool; give a number.")
        arr = float_array(f"t_span ({label})", v)
        if arr.ndim:
            raise InputError(f"`t_span` {label} must be a number; got shape {arr.shape}.")
        if not math.isfinite(float(arr)):
            raise InputError(f"`t_span` {label}={float(arr)} is not finite; give finite times.")
    t0, t1 = float(t0), float(t1)
    if plain and not (math.isfinite(t0) and math.isfinite(t1)):
        raise InputError(f"`t_span=({t0}, {t1})` is not finite; give finite times.")
    if t1 == t0:
        raise InputError(
            f"`t_span=({t0:g}, {t1:g})` is empty; the end time must differ from the start."
        )
    if t1 < t0:
        raise InputError(
            f"`t_span=({t0:g}, {t1:g})` runs backwards; give t0 < t1 (odelab integrates forward "
            "in time)."
        )
    return t0, t1


def check_step(argument: str, value: Any, example: str = "1e-4") -> Any:
    """A positive, finite number (a step size); a tracer passes through unchecked."""
    v = scalar(argument, value)
    if isinstance(v, jax.core.Tracer):
        return v
    if not v > 0:
        raise InputError(f"`{argument}={value!r}` must be a positive number, e.g. {example}.")
    return v


def accepts(fun: Any, n_args: int) -> bool:
    """Whether `fun` is callable with `n_args` positional arguments (True when its signature
    cannot be read: the call itself will say)."""
    if not callable(fun):
        return False
    try:
        inspect.signature(fun).bind(*([None] * n_args))
    except TypeError:
        return False
    except ValueError:  # builtins without a signature
        return True
    return True


def check_flag(argument: str, value: Any) -> bool:
    """`value` as a bool (True/False, or numpy's bools), else InputError."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InputError(f"`{argument}={value!r:.60}` must be True or False.")


# --------------------------------------------------------------------------------------------
# memory: plans that cannot fit are refused before anything is compiled
# --------------------------------------------------------------------------------------------
DEFAULT_MEMORY_LIMIT = 2 * 2**30  # bytes; capped at half the machine's memory
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "m": 2**20, "mb": 2**20, "g": 2**30,
          "gb": 2**30, "t": 2**40, "tb": 2**40}


@functools.cache
def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def parse_size(argument: str, text: str) -> float:
    """A size in words ("8GB", "512 MB", "1e6", "off") as bytes (inf for "off"), else
    InputError naming `argument`."""
    setting = text.strip().lower().replace(" ", "")
    if setting in ("off", "none", "inf"):
        return math.inf
    number = setting.rstrip("kmgtb")
    unit = setting[len(number):]
    try:
        value = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        value = math.nan
    if not value >= 0 or math.isnan(value):
        raise InputError(f"{argument}={text!r} is not a size; give e.g. 8GB, 512MB or off.")
    return value


def memory_limit() -> float:
    """The most memory (bytes) one solve's stored arrays may take before odelab refuses it.

    ``ODELAB_MEMORY_LIMIT`` in the environment sets it (e.g. "8GB", "512MB", or "off"); by
    default 2 GB, or half the machine's memory if that is less.
    """
    setting = os.environ.get("ODELAB_MEMORY_LIMIT", "").strip()
    if setting:
        value = parse_size("ODELAB_MEMORY_LIMIT", setting)
        return math.inf if value == 0 else value
    physical = _physical_memory()
    return min(DEFAULT_MEMORY_LIMIT, physical / 2) if physical else DEFAULT_MEMORY_LIMIT


# --------------------------------------------------------------------------------------------
# memory budget: what `method="auto"` lets a derivative's stored arrays take
# --------------------------------------------------------------------------------------------
BUDGET_FRACTION = 0.5  # of the device's free memory, by default
_FREE_MEMORY_TTL = 1.0  # seconds a reading of free memory is reused (solves run in loops)
_free_memory_reading: list = [-math.inf, None]  # [when, bytes]


def check_memory_budget(value: Any, argument: str = "memory_budget") -> float | None:
    """A memory budget in bytes (a positive number, or a size such as "64MB"; None: not set),
    else InputError naming `argument`."""
    if value is None:
        return None
    if isinstance(value, str):
        size = parse_size(f"`{argument}`", value)
    elif isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                          np.floating)):
        raise InputError(
            f"`{argument}={value!r:.60}` must be a number of bytes or a size such as '64MB' "
            f"(e.g. {argument}='512MB'); got {type(value).__name__}.")
    else:
        size = float(value)
    if math.isnan(size) or size <= 0:
        raise InputError(
            f"`{argument}={value!r}` must be a positive size, e.g. {argument}='512MB' or "
            f"{argument}=2**29 (bytes); 'off' for no budget.")
    return size


def free_memory() -> float | None:
    """Bytes free on the default device now: an accelerator's unused memory, or on CPU the
    memory the operating system reports available (None when unknown)."""
    import time

    now = time.monotonic()
    if now - _free_memory_reading[0] < _FREE_MEMORY_TTL:
        return _free_memory_reading[1]
    free = None
    try:
        device = jax.devices()[0]
        stats = device.memory_stats() if device.platform != "cpu" else None
        if stats and "bytes_limit" in stats:
            free = float(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    except Exception:  # a backend without memory statistics
        free = None
    if free is None:
        free = _available_ram()
    _free_memory_reading[:] = [now, free]
    return free


def _available_ram() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    physical = _physical_memory()
    return physical / 2 if physical else None


def set_memory_budget(*given: Any) -> float | None:
    """The first memory budget set among `given` (checked: per call, then session), else
    ``ODELAB_MEMORY_BUDGET``'s, else None (the default: a share of the free memory)."""
    for value in given:
        if value is not None:
            return check_memory_budget(value)
    setting = os.environ.get("ODELAB_MEMORY_BUDGET", "").strip()
    return check_memory_budget(setting, "ODELAB_MEMORY_BUDGET") if setting else None


def memory_budget(given: Any = None) -> float:
    """The memory budget (bytes) `method="auto"` plans a derivative's solves within.

    `given` (a per-call or session `memory_budget=`) if set; else ``ODELAB_MEMORY_BUDGET`` in
    the environment ("512MB", "off"); else half the device's free memory. Never above
    `memory_limit()`: a plan over the limit is refused anyway.
    """
    budget = set_memory_budget(given)
    if budget is None:
        free = free_memory()
        budget = BUDGET_FRACTION * free if free else math.inf
    return min(budget, memory_limit())


def size_text(n_bytes: float) -> str:
    """A byte count in words: '74 GB', '512 MB'."""
    for unit, size in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n_bytes >= size:
            return f"{n_bytes / size:.3g} {unit}"
    return f"{int(n_bytes)} bytes"


def check_memory(what: str, n_bytes: float, way_out: str) -> None:
    """InputError when `n_bytes` (what the plan `what` would store) exceeds `memory_limit()`.

    `what` says what asks for the memory ("`saveat=10**8` stores 10**8 points of 2 states"),
    `way_out` what to change.
    """
    limit = memory_limit()
    if n_bytes > limit:
        raise InputError(
            f"{what}: about {size_text(n_bytes)}, more than odelab's memory limit of "
            f"{size_text(limit)}. {way_out} (To allow more, set ODELAB_MEMORY_LIMIT, e.g. "
            "ODELAB_MEMORY_LIMIT=16GB, before the solve.)"
        )
