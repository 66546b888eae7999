"""Process-wide settings applied when odelab is imported.

* float64 on by default (gradient work needs it). Opt out with ``ODELAB_FLOAT64=0`` in the
  environment before importing odelab.
* equinox runtime checks return NaN instead of calling back to the host, so compiled programs
  have no host callbacks and JAX's persistent compilation cache can store them. Solver failures
  come back as a status on the Solution instead. Opt out with ``EQX_ON_ERROR=raise``.
* JAX's persistent compilation cache in the user cache dir (``ODELAB_CACHE_DIR`` to move it,
  ``ODELAB_CACHE_DIR=off`` to turn it off).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("EQX_ON_ERROR", "nan")

import jax  # noqa: E402

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
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return target


enable_compilation_cache()
