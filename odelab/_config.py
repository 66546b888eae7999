"""Process-wide settings applied when odelab is imported.

* float64 on by default (gradient work needs it). Opt out with ``ODELAB_FLOAT64=0`` in the
  environment before importing odelab.
* equinox runtime checks return NaN instead of calling back to the host, so compiled programs
  have no host callbacks and JAX's persistent compilation cache can store them. Solver failures
  come back as a status on the Solution instead. This holds whatever was imported first: when
  equinox (or diffrax) was imported before odelab, it has already read its setting, so odelab
  sets it there too. Opt out with ``EQX_ON_ERROR=raise`` in the environment.
* JAX's persistent compilation cache in the user cache dir (``ODELAB_CACHE_DIR`` to move it,
  ``ODELAB_CACHE_DIR=off`` to turn it off).
* On x86-64, XLA's CPU code generation stops at AVX2 (``--xla_cpu_max_isa=AVX2`` added to
  ``XLA_FLAGS``) so that cached programs load again: see `_portable_cpu_target`. Setting
  ``xla_cpu_max_isa`` in ``XLA_FLAGS`` yourself overrides this.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

_USER_EQX_ON_ERROR = os.environ.get("EQX_ON_ERROR")
os.environ.setdefault("EQX_ON_ERROR", "nan")

import jax  # noqa: E402
from jax._src import xla_bridge  # noqa: E402


def _portable_cpu_target() -> None:
    """Compile CPU programs for AVX2 at most, so the persistent cache can load them again.

    On CPUs with AVX-512, XLA adds the LLVM tuning attributes ``+prefer-no-gather`` and
    ``+prefer-no-scatter`` to the target it compiles for, and its loader of cached CPU programs
    then demands those "features" of the host, which never lists them: every cached program is
    rejected ("Target machine feature +prefer-no-gather is not supported on the host machine",
    jax-ml/jax#38445, openxla/xla#44565) and every process compiles everything again. XLA adds
    them only when the target has AVX-512, so capping the instruction set at AVX2 avoids it. It
    also makes a cache filled on one x86-64 machine (a Binder image build) load on another with
    or without AVX-512. ODE programs lose nothing measurable: XLA vectorises for 256-bit
    registers by default. JAX puts XLA_FLAGS into its cache keys, so the flag is set the same
    way in every process that writes or reads the cache. XLA reads the flags when JAX creates
    its CPU backend; if that has already happened, nothing is changed.

    Not seen failing here: the machines odelab is developed on (AMD EPYC, AVX2) load their
    cached programs with or without the flag. That the cap avoids the rejection rests on
    XLA's source (the IR compiler adds the two attributes only when the target has avx512f)
    and on the reports above, not on a run on an AVX-512 machine.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_max_isa" in flags or xla_bridge.backends_are_initialized():
        return
    os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_max_isa=AVX2".strip()


_portable_cpu_target()


def _equinox_error_mode() -> None:
    """equinox's runtime-error mode as odelab wants it, even if equinox was imported first.

    equinox reads EQX_ON_ERROR once, when it is imported, into a module variable that every
    `eqx.error_if` consults while tracing; a program traced with "raise" carries host callbacks,
    which JAX's persistent cache refuses to store. Unless the user chose a mode, set "nan" there.
    """
    if _USER_EQX_ON_ERROR is not None:
        return
    for name in ("equinox._config", "equinox._errors"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "EQX_ON_ERROR", "nan") != "nan":
            module.EQX_ON_ERROR = "nan"


_equinox_error_mode()

FLOAT64 = os.environ.get("ODELAB_FLOAT64", "1").lower() not in ("0", "false", "no", "off")
if FLOAT64:
    jax.config.update("jax_enable_x64", True)


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "odelab" / "jax"


def cache_dir() -> Path | None:
    """Where compiled programs are cached across sessions, or None when caching is off."""
    setting = os.environ.get("ODELAB_CACHE_DIR")
    if setting and setting.lower() in ("off", "0", "none", "false"):
        return None
    return Path(setting) if setting else _default_cache_dir()


def cached_program_count(path: Path | None = None) -> int:
    """How many compiled programs the persistent cache at `path` (default `cache_dir()`) holds."""
    path = cache_dir() if path is None else path
    return sum(1 for p in path.iterdir() if p.is_file()) if path and path.is_dir() else 0


def _min_compile_seconds() -> float:
    setting = os.environ.get("ODELAB_CACHE_MIN_COMPILE_S", "").strip()
    if not setting:
        return 0.0
    try:
        seconds = float(setting)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0.0 or seconds == float("inf"):
        from ._errors import InputError

        raise InputError(f"ODELAB_CACHE_MIN_COMPILE_S={setting!r} must be a number of seconds "
                         "(0 or more), e.g. 1.0; unset it to cache every program.")
    return seconds


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache at `path` (default: `cache_dir()`)."""
    target = Path(path) if path is not None else cache_dir()
    if target is None:
        return None
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(target))
    # Every program, however fast it compiled: an explorer's first frame is mostly programs that
    # compile in 0.05-0.2 s each (13 of 18 for Lorenz), which together cost seconds; stored
    # (a few kB each) a second kernel's first frame compiles nothing. ODELAB_CACHE_MIN_COMPILE_S
    # stores only programs that took at least that long (the test suite keeps the slow ones).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", _min_compile_seconds())
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return target


enable_compilation_cache()
